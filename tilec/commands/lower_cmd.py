"""``tilec lower MODEL -o OUT.onnx``: run the lowering passes, prove them, write the lowered model.

Prints per pass what it did (nodes and parameters before/after, rewrites by kind, the proof's
measured error, time) and, after ``quantize``, each layer's signal-to-quantization-noise ratio. The
written model passes ``onnx.checker`` and runs in onnxruntime (fused ops are model-local functions,
low-bit weights are DequantizeLinear of INT8/INT4/INT2 initializers); tilec's annotations for the
planner are in each node's metadata (Netron shows them).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from rich.table import Table

from tilec.commands.common import add_model_args, console, output_file, split_names
from tilec.errors import InputError

_DEFAULT_VERIFY = "pass"


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "lower", parents=[parent], help="run the lowering passes and write the lowered ONNX",
        description="Capture MODEL, run the target's lowering pipeline (or --passes), prove every "
                    "rewrite with onnxruntime on a small probe of the model, write OUT.onnx and "
                    "print what each pass changed. See `tilec passes` for the passes.",
        epilog="Precision map (TOML): default = \"int4\"; first = \"int8\"; last = \"int8\"; "
               "[layers] \"node-glob\" = \"int8\". See docs/passes.md.")
    add_model_args(p)
    p.add_argument("--output", "-o", type=output_file, required=True, metavar="OUT.onnx",
                   help="where to write the lowered model")
    p.add_argument("--passes", default=None, metavar="A,B,C",
                   help="passes to run, in order (default: the target's pipeline)")
    p.add_argument("--precision", "-p", default=None,
                   help="fp32 | fp16 | int8 | int4 | int2 (default: the target's)")
    p.add_argument("--precision-map", default=None, metavar="FILE",
                   help="per-layer precisions, TOML (default/first/last/[layers] globs)")
    p.add_argument("--calibration", nargs="+", default=None, metavar="NPY",
                   help=".npy/.npz input batches (or a directory of them) to calibrate "
                        "activation quantization; without them only activation bit widths are "
                        "recorded")
    p.add_argument("--verify", choices=("pass", "pipeline", "off"), default=_DEFAULT_VERIFY,
                   help="prove each pass on its own (default), each run of exact passes once, "
                        "or not at all")
    p.add_argument("--json", type=output_file, metavar="FILE",
                   help="also write the pass statistics as JSON")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="list every rewrite and every pattern left alone")
    p.set_defaults(func=run)


def probe_factory(model: object, captured: object,
                  input_shape: object = None) -> Callable[[], object | None]:
    """A function capturing the same model at batch 1 and a small image size (the proof's probe),
    called only when a re-shaped copy of the graph does not run (sizes baked into constants at
    capture); see :func:`tilec.compile.probe_source`."""
    from tilec.compile import probe_source

    return probe_source(model, captured, input_shape)


_STREAM_MIN = 1 << 16
"""Constants with more bytes than this are written one by one (see :func:`write_model`)."""


def write_model(graph: object, out: Path) -> None:
    """Export ``graph`` to ``out`` and check the written file with onnx.checker (a model beyond
    protobuf's 2 GB limit keeps its weights in ``OUT.onnx.data`` next to it).

    Exporting the whole model and serializing it held three more copies of the weights beside the
    graph's own (the proto, the serializer's buffer and the bytes object: 2.6 GB peak for the
    283 MB P5 export). Protobuf merges a message field that occurs twice, and appends to a
    repeated one, so the file is written as the model without its large weights followed by one
    ``graph { initializer: ... }`` record per weight -- the same ONNX model, never more than one
    weight in flight.
    """
    import numpy as np
    import onnx_graphsurgeon as gs
    from onnx_graphsurgeon.exporters.onnx_exporter import OnnxExporter

    from tilec.ir import to_onnx

    big = [t for t in graph.tensors().values()
           if isinstance(t, gs.Constant) and isinstance(t._values, np.ndarray)
           and t._values.nbytes > _STREAM_MIN and t.outputs]
    if sum(t._values.nbytes for t in big) > (1 << 31) - (1 << 26):  # past protobuf's limit
        model = to_onnx(graph)
        onnx.save(model, str(out), save_as_external_data=True, location=out.name + ".data")
        del model
        onnx.checker.check_model(str(out))
        return
    held = {id(t): t._values for t in big}
    try:
        for t in big:  # placeholders of the right dtype while the rest is exported
            t._values = np.zeros((), dtype=held[id(t)].dtype)
        model = to_onnx(graph)
    finally:
        for t in big:
            t._values = held[id(t)]
    names = {t.name for t in big}
    keep = [init for init in model.graph.initializer if init.name not in names]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    try:
        with open(out, "wb") as fh:
            fh.write(model.SerializeToString())
            del model
            for t in big:
                tensor = OnnxExporter.export_tensor_proto(t).SerializeToString()
                fh.write(_field(7, _field(5, tensor)))  # ModelProto.graph.initializer
        onnx.checker.check_model(str(out))
    except BaseException:
        out.unlink(missing_ok=True)  # never leave a partial or invalid model behind
        raise


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field: tag, length, payload."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _calibration(paths: list[str] | None, graph) -> list[dict[str, np.ndarray]] | None:
    if not paths:
        return None
    from tilec.numerics import InputSpec, load_arrays

    specs = [InputSpec(t.name, tuple(int(d) for d in t.shape), np.dtype(t.dtype))
             for t in graph.inputs]
    return load_arrays(paths, specs)


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.3f}M" if n >= 100_000 else f"{n:,}"


def _fmt_err(stats) -> str:
    """The proof's figure: region-by-region error (exact passes; the end-to-end output error in
    brackets when it was measured) or the output error (lossy passes)."""
    rec = stats.verify
    if rec is None:
        return "-" if not stats.rewrites else "not verified"
    tag = "" if len(rec.scope) == 1 else f" [{'+'.join(rec.scope)}]"
    if rec.method == "structure":
        return "same graph (annotations only)"
    if rec.exact:
        out = f" (out {rec.output_rel_err:.0e})" if rec.output_rel_err is not None else ""
        return f"{rec.max_rel_err:.1e} ok{out}{tag}"
    return f"output {rec.max_rel_err:.2e} (lossy){tag}"


def print_stats(con, stats: list, *, verbose: bool = False) -> None:
    """The per-pass table (shared with benchmarks)."""
    table = Table(title="lowering passes", show_lines=False)
    for col in ("pass", "nodes", "params", "rewrites", "proof (max rel. error)", "time"):
        table.add_column(col, justify="right" if col in ("nodes", "params", "time") else "left")
    for s in stats:
        counts = ", ".join(f"{k} {v}" for k, v in s.counts().items()) or "-"
        table.add_row(s.name, f"{s.nodes_before} -> {s.nodes_after}",
                      f"{_fmt_params(s.params_before)} -> {_fmt_params(s.params_after)}",
                      counts, _fmt_err(s), f"{s.seconds:.2f} s")
    con.print(table)
    for s in stats:
        delta = s.op_delta()
        if delta:
            con.print(f"  {s.name}: " + ", ".join(f"{k} {a}->{b}" for k, (a, b) in delta.items()))
    for s in stats:
        if s.name == "quantize" and s.layers:
            _print_layers(con, s.layers, verbose)
    for s in stats:
        for note in s.notes:
            con.print(f"  note ({s.name}): {note}")
        if verbose:
            for r in s.rewrites:
                con.print(f"  {s.name}: {r.kind} at {', '.join(r.where)}"
                          + (f" -- {r.detail}" if r.detail else ""))
            for r in s.left:
                con.print(f"  {s.name}: left {r.kind} at {', '.join(r.where)}: {r.detail}")
        elif s.left:
            con.print(f"  {s.name}: {len(s.left)} pattern(s) left alone (--verbose lists them)")


def _print_layers(con, layers: list[dict], verbose: bool) -> None:
    quant = [lay for lay in layers if lay.get("form") in ("qdq", "fake-quant")]
    if not quant:
        return
    table = Table(title="quantized layers (per-output-channel symmetric weights)")
    for col in ("layer", "op", "precision", "form", "params", "SQNR dB", "role"):
        table.add_column(col, justify="right" if col in ("params", "SQNR dB") else "left")
    shown = quant if verbose or len(quant) <= 12 else (
        sorted(quant, key=lambda lay: lay["sqnr_db"])[:8])
    for lay in shown:
        table.add_row(lay["name"], lay["op"], lay["precision"], lay["form"],
                      f"{lay['params']:,}", f"{lay['sqnr_db']:.1f}", lay.get("role", ""))
    con.print(table)
    sq = np.array([lay["sqnr_db"] for lay in quant], dtype=float)
    w_bytes = sum(lay["weight_bytes"] for lay in quant)
    f16 = sum(lay["fp16_bytes"] for lay in quant)
    scales = sum(lay["scale_bytes"] for lay in quant)
    extra = "" if shown is quant else f" ({len(shown)} lowest shown; --verbose lists all)"
    con.print(f"  {len(quant)} layers quantized{extra}: SQNR min {sq.min():.1f} dB, median "
              f"{np.median(sq):.1f} dB; weights {w_bytes:,} B (+{scales:,} B scales) vs "
              f"{f16:,} B at fp16 ({w_bytes / f16:.3f}x)")


def run(args: argparse.Namespace) -> int:
    from tilec.capture import capture
    from tilec.compile import pipeline, resolve_precision
    from tilec.passes import run_pipeline
    from tilec.targets import load_target

    target = load_target(args.target)
    precision = resolve_precision(target, args.precision)
    names = pipeline(target, precision, split_names(args.passes, "--passes"), args.precision_map)
    out = Path(args.output)
    if out.suffix != ".onnx":
        raise InputError(f"--output: '{out}' should end in .onnx")
    if not out.parent.exists():
        raise InputError(f"--output: directory '{out.parent}' does not exist")
    captured = capture(args.model, batch=args.batch, image_size=args.image_size,
                       input_shape=args.input_shape)
    calibration = _calibration(args.calibration, captured.graph)
    probe = probe_factory(args.model, captured, args.input_shape)
    graph, stats = run_pipeline(
        captured.graph, names, precision=precision, precision_map=args.precision_map,
        source=captured.source, verify=args.verify, probe=probe, calibration=calibration,
        act_bits=target.act_bits, stride=captured.stride,
    )
    write_model(graph, out)
    con = console(args)
    if not args.quiet:
        con.print(f"{captured.source}: {', '.join(names)} at {precision} "
                  f"(target {target.name}), input {dict(captured.input_shapes)}")
        print_stats(con, stats, verbose=args.verbose)
    con.print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB; nodes {len(graph.nodes)})")
    if args.json:
        payload = {"model": captured.source, "precision": precision, "target": target.name,
                   "passes": list(names), "stats": [s.to_dict() for s in stats]}
        Path(args.json).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return 0
