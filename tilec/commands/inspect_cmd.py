"""``tilec inspect MODEL``: what was captured -- op counts, parameters, MACs, largest tensors."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import TYPE_CHECKING

from rich.table import Table

from tilec.commands.common import add_model_args, console, output_file, positive_int
from tilec.errors import InputError

if TYPE_CHECKING:  # numpy, onnx and graphsurgeon load only when a command runs: `tilec --help`
    from tilec.capture.types import Captured  # stays fast


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("inspect", parents=[parent], help="print the captured graph's summary",
                       description="Capture MODEL (no lowering) and print op counts by type, "
                                   "parameters, MACs and the largest activations.")
    add_model_args(p, target=False)
    p.add_argument("--host-ops", choices=("auto", "none"), default="auto",
                   help="ops the chip cannot run at the graph's head or tail (detector "
                        "post-processing: NMS, TopK, RoiAlign, ...): 'auto' runs them on the "
                        "host, the transfer at the cut priced in the latency; 'none' refuses "
                        "the model (default: auto)")
    p.add_argument("--top", type=positive_int, default=8, metavar="K",
                   help="how many of the largest activations to list (default 8)")
    p.add_argument("--json", type=output_file, metavar="FILE",
                   help="also write the summary as JSON")
    p.set_defaults(func=run)


def _dtype_name(dtype: object) -> str:
    import numpy as np

    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype)


def summarize(captured: Captured, top: int = 8) -> dict:
    """The inspect summary as plain data (also used by tests and benchmarks).

    Parameters count each float weight once (shared weights too) plus quantized weights behind a
    DequantizeLinear; integer shape constants (a Reshape's target, a Resize's scales) and
    BatchNormalization running statistics are not parameters (as papers count them). Bytes are as
    stored in the file, statistics included, before any precision is chosen.
    """
    import numpy as np
    import onnx_graphsurgeon as gs

    from tilec.opinfo import build_graph_info

    graph = captured.graph
    info = build_graph_info(graph, weight_bits=32, act_bits=32, source=captured.source)
    counts = Counter(op.op_type if not op.activation else f"{op.op_type}+{op.activation}"
                     for op in info.ops)
    tensors = graph.tensors()
    weights: dict[str, tuple[int, int, str]] = {}  # name -> (elements, stored bits, dtype)
    statistics: set[str] = set()  # BatchNormalization running mean / variance
    for op in info.ops:
        for w in op.weights:
            tensor = tensors.get(w.name)
            if w.name in weights or tensor is None:
                continue
            if w.statistic:
                statistics.add(w.name)
            producer = tensor.inputs[0] if isinstance(tensor, gs.Variable) and tensor.inputs \
                else None
            if producer is not None and producer.op == "DequantizeLinear":
                weights[w.name] = (w.elements, w.bits, f"int{w.bits}")
            elif tensor.dtype is not None and np.dtype(tensor.dtype).kind == "f":
                dt = np.dtype(tensor.dtype)
                weights[w.name] = (w.elements, dt.itemsize * 8, dt.name)
    by_dtype = Counter()
    for name, (elements, _, dtype) in weights.items():
        if name not in statistics:
            by_dtype[dtype] += elements
    largest = sorted(info.tensors.values(), key=lambda t: (-t.bytes, t.name))[:max(top, 0)]
    return {
        "model": captured.name, "source": captured.source, "opset": captured.opset,
        "inputs": {t.name: {"shape": [int(d) for d in t.shape], "dtype": _dtype_name(t.dtype)}
                   for t in graph.inputs},
        "outputs": {n: list(info.tensors[n].shape) for n in info.outputs},
        "batch": captured.batch,
        "image_size": list(captured.image_size) if captured.image_size else None,
        "ops": len(info.ops),
        "op_counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        "params": sum(e for n, (e, _, _) in weights.items() if n not in statistics),
        "params_by_dtype": dict(sorted(by_dtype.items())),
        "weight_bytes": sum((e * bits + 7) // 8 for e, bits, _ in weights.values()),
        "macs": info.macs,
        "largest_tensors": [
            {"name": t.name, "shape": list(t.shape), "bytes": t.bytes,
             "producer": t.producer} for t in largest
        ],
    }


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f}"


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.1f} KiB"


def _shape(dims: list[int]) -> str:
    return "x".join(map(str, dims)) if dims else "scalar"


def run(args: argparse.Namespace) -> int:
    from tilec.capture import capture

    captured = capture(args.model, batch=args.batch, image_size=args.image_size,
                       input_shape=args.input_shape, host_ops=args.host_ops)
    data = summarize(captured, args.top)
    out = console(args)
    for note in captured.meta.get("notes", ()):  # e.g. "batch 1 assumed" for a dynamic batch
        out.print(f"note: {note}")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("inputs", ", ".join(f"{k} {_shape(v['shape'])} {v['dtype']}"
                                     for k, v in data["inputs"].items()))
    grid.add_row("outputs", ", ".join(f"{k} {_shape(v)}" for k, v in data["outputs"].items()))
    grid.add_row("ops", f"{data['ops']}: " + ", ".join(f"{op} {n}"
                                                        for op, n in data["op_counts"].items()))
    dtypes = ", ".join(data["params_by_dtype"]) or "none"
    grid.add_row("parameters", f"{data['params']:,} ({_mib(data['weight_bytes'])} as stored, "
                               f"{dtypes})")
    grid.add_row("MACs", f"{_si(data['macs'])} per inference at batch {data['batch']}")
    where = f"  {data['source']}" if data["source"] != data["model"] else ""
    out.print(f"[bold]{data['model']}[/]{where}  (opset {data['opset']})")
    out.print(grid)
    if data["largest_tensors"]:
        big = Table(title=f"{len(data['largest_tensors'])} largest activations", show_edge=False,
                    title_justify="left")
        for col in ("tensor", "shape", "size", "produced by"):
            big.add_column(col, justify="right" if col == "size" else "left")
        for t in data["largest_tensors"]:
            big.add_row(t["name"], _shape(t["shape"]), _mib(t["bytes"]),
                        t["producer"] or "(graph input)")
        out.print(big)
    if args.json:
        try:
            with open(args.json, "w") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
                fh.write("\n")
        except OSError as exc:
            raise InputError(f"--json: cannot write '{args.json}': {exc.strerror}") from exc
    return 0
