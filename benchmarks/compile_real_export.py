"""Compile cost of a *real* export: time and peak memory at batch 1, 2, 8, per stage.

The zoo's own files come through tilec's torch.fx door, already clean. A user's file is a
TorchScript export with every BatchNormalization and a decomposed Mish still in it, and a dynamic
batch axis. This script makes such a file itself from the zoo (``torch.onnx.export`` of the zoo's
module, ``do_constant_folding=False`` so every BN stays, ``nn.Mish`` replaced by
``x * tanh(softplus(x))``, batch axis dynamic; cached under ``$TILEC_CACHE_DIR/real-exports``),
then

* times full compiles, each a fresh ``tilec compile FILE --target T --batch B`` process under
  ``/usr/bin/time -v`` (wall time, peak RSS of the whole process, exit code), and
* runs one compile in-process and reports, per stage (capture, lower = the passes, proof = the
  onnxruntime proof of the passes, plan, verify = the plan's independent verifier), the wall time
  and the peak RSS reached during the stage (a sampler thread reading ``/proc/self/status``
  every 5 ms; with ``--tracemalloc`` also the peak of Python-traced allocations -- numpy arrays
  included, onnxruntime's own arena not).

Usage::

    python benchmarks/compile_real_export.py [--model yolov4-p5] [--image-size 896]
        [--batches 1,2,8] [--target gc200] [--repeat 1] [--no-stages] [--tracemalloc]
        [--band on|off|both] [--what-if on|off|both] [--profile-band]
    python benchmarks/compile_real_export.py --model yolov4-p7   # 1536 px, batch 1 (slow)
    python benchmarks/compile_real_export.py --export-only        # just make / show the file
    python benchmarks/compile_real_export.py --exporter dynamo --batches 1 --band off
        # torch 2.13's default exporter (needs onnxscript): BN mostly folded by its optimizer,
        # softplus as where(x > 20, x, softplus(x)), weights in FILE.data; --mish module keeps
        # nn.Mish, --static-batch drops the dynamic axis (docs/coverage.md has both files)

Every table names the settings its compiles ran with: the uncertainty band (``--band on``, the
CLI's default, or ``off``) and the what-if search when the model does not fit (``on``, the
default, or ``--no-what-if``). The band applies only to a plan that fits; the what-if only to
one that does not. ``--profile-band`` also runs the band once in-process on the batch-1 plan
under cProfile and prints where its time goes.

Figures measured on a shared machine are inflated by the other processes; CPU seconds are printed
beside wall seconds for that reason.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

DEFAULT_SIZE = {"yolov4-p5": 896, "yolov4-p6": 1280, "yolov4-p7": 1536}


# ----------------------------------------------------------------------------------- export
def export_path(model: str, size: int, head: str, exporter: str = "torchscript",
                mish: str = "decomposed", batch_axis: str = "dynamic") -> Path:
    """Where the real export of ``model`` at ``size`` px is cached (keyed by the zoo's code)."""
    from tilec.zoo.cache import _version, cache_dir, source_hash

    fields = {"model": model, "size": size, "head": head, "zoo": source_hash(),
              "torch": _version("torch"), "script": 1}
    if (exporter, mish, batch_axis) != ("torchscript", "decomposed", "dynamic"):
        fields.update(exporter=exporter, mish=mish, batch_axis=batch_axis,
                      onnxscript=_version("onnxscript"))
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    folder = cache_dir() / "real-exports"
    folder.mkdir(parents=True, exist_ok=True)
    bn = "-bn" if exporter == "torchscript" else ""
    batch = "dynbatch" if batch_axis == "dynamic" else "staticbatch"
    return folder / f"{model}-{size}-{exporter}{bn}-mish{mish}-{batch}-{head}-{key}.onnx"


def make_export(model: str, size: int, head: str = "detect", exporter: str = "torchscript",
                mish: str = "decomposed", batch_axis: str = "dynamic") -> Path:
    """The export of zoo model ``model`` as a user would make it (cached).

    ``exporter="torchscript"``: ``torch.onnx.export(dynamo=False)``, opset 18, no constant
    folding. ``exporter="dynamo"``: torch 2.13's default, ``torch.onnx.export(model, args, f)``
    with nothing but the input name and (``batch_axis="dynamic"``) ``dynamic_shapes`` with a
    ``torch.export.Dim`` -- torch.export, onnxscript's translation, its optimizer. ``mish``:
    ``"decomposed"`` writes Mish out as ``x * tanh(softplus(x))`` (as the official Scaled-YOLOv4
    code and older models do), ``"module"`` keeps ``nn.Mish``.

    ``head="detect"`` adds what the official Scaled-YOLOv4 ``Detect`` layer does to each output
    map in an export, ``y.view(bs, na, no, ny, nx).permute(0, 1, 3, 4, 2)``: traced with a dynamic
    batch, its target shape is computed from ``Shape`` nodes, which capture folds to constants at
    the compiled batch and image size. ``head="raw"``: the zoo's raw 1x1 conv maps.
    """
    path = export_path(model, size, head, exporter, mish, batch_axis)
    if path.exists():
        return path
    import torch
    from torch import nn

    from tilec import zoo

    class DecomposedMish(nn.Module):
        """Mish written out, as older PyTorch / hand-written models export it."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.tanh(nn.functional.softplus(x))

    class DetectView(nn.Module):
        """The export-mode view of Scaled-YOLOv4's Detect: [bs, na, ny, nx, no] per level."""

        def __init__(self, body: nn.Module, anchors: int = 4) -> None:
            super().__init__()
            self.body = body
            self.anchors = anchors

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            out = []
            for y in self.body(x):
                bs, c, ny, nx = y.shape
                out.append(y.view(bs, self.anchors, c // self.anchors, ny, nx)
                           .permute(0, 1, 3, 4, 2).contiguous())
            return out

    module = zoo.build(model)
    for parent in list(module.modules()) if mish == "decomposed" else ():
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Mish):
                setattr(parent, name, DecomposedMish())
    if head == "detect":
        module = DetectView(module).eval()
    x = torch.zeros(1, 3, size, size)
    import tempfile

    t0 = time.perf_counter()
    # Written under the final name in a scratch folder, then moved: the dynamo exporter puts the
    # weights beside the graph in ``NAME.data`` (its default, external_data=True) and records that
    # name in the graph, so the file cannot be renamed after the export.
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch, torch.no_grad():
        tmp = Path(scratch) / path.name
        if exporter == "dynamo":
            shapes = ({0: torch.export.Dim("batch")},) if batch_axis == "dynamic" else None
            torch.onnx.export(module, (x,), str(tmp), input_names=["images"],
                              dynamic_shapes=shapes, verbose=False)
        else:
            axes = {"images": {0: "batch"}} if batch_axis == "dynamic" else None
            torch.onnx.export(module, (x,), str(tmp), dynamo=False, opset_version=18,
                              do_constant_folding=False, input_names=["images"],
                              dynamic_axes=axes)
        for extra in sorted(Path(scratch).iterdir(), key=lambda f: f == tmp):  # graph last
            os.replace(extra, path.parent / extra.name)
    data = path.with_name(path.name + ".data")
    sidecar = f" + {data.stat().st_size / 2**20:.0f} MiB in {data.name}" if data.exists() else ""
    print(f"exported {model} at {size} px in {time.perf_counter() - t0:.1f} s -> {path} "
          f"({path.stat().st_size / 2**20:.1f} MiB{sidecar})", flush=True)
    return path


def describe(path: Path) -> str:
    """What the file looks like: size, opset, external data, node counts by op type, input."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    ops: dict[str, int] = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    dims = [d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in m.opset_import)
    external = sum(1 for t in m.graph.initializer
                   if t.data_location == onnx.TensorProto.EXTERNAL)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0])))
    data = path.with_name(path.name + ".data")
    size = path.stat().st_size + (data.stat().st_size if data.exists() else 0)
    return (f"{path.name}: {size / 2**20:.0f} MiB, opset {opsets}, "
            f"{len(m.graph.node)} nodes, {len(m.graph.initializer)} initializers "
            f"({external} in external data), {len(m.functions)} functions, input {dims}\n"
            f"  ops: {counts}")


# ----------------------------------------------------------------------------------- whole runs
def timed_compile(path: Path, target: str, batch: int, extra: list[str]) -> dict:
    """One ``tilec compile`` process under /usr/bin/time -v: wall, CPU, peak RSS, exit code."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "tilec", "compile", str(path),
           "--target", target, "--batch", str(batch), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    err = proc.stderr

    def field(label: str) -> str | None:
        m = re.search(rf"^\s*{re.escape(label)}: (.*)$", err, re.M)
        return m.group(1).strip() if m else None

    rss_kb = field("Maximum resident set size (kbytes)")
    cpu = sum(float(field(k) or 0) for k in ("User time (seconds)", "System time (seconds)"))
    status = re.search(r"Exit status: (\d+)", err)
    return {"batch": batch, "wall": wall, "cpu": cpu,
            "rss_gb": int(rss_kb) / 2**20 if rss_kb else float("nan"),
            "exit": int(status.group(1)) if status else proc.returncode,
            "last": (proc.stdout.strip().splitlines() or [""])[-1][:100],
            "signal": field("Command terminated by signal")}


# ----------------------------------------------------------------------------------- stages
class RssSampler:
    """Peak resident set size of this process per stage, sampled every ``period`` seconds."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.peak = 0
        self.stages: dict[str, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            r = self.rss()
            with self._lock:
                self.peak = max(self.peak, r)
            time.sleep(self.period)

    def start(self) -> None:
        self.peak = self.rss()
        self._thread.start()

    def mark(self, stage: str) -> None:
        """Charge the peak since the last mark to ``stage`` and start a new interval."""
        now = self.rss()
        with self._lock:
            peak = max(self.peak, now)
            self.stages[stage] = max(self.stages.get(stage, 0), peak)
            self.peak = now

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def patched(obj: object, name: str, wrapper):
    original = getattr(obj, name)
    setattr(obj, name, wrapper(original))
    try:
        yield
    finally:
        setattr(obj, name, original)


def stage_run(path: Path, target_name: str, batch: int, trace: bool) -> dict:
    """One compile in this process, stage by stage: seconds and peak RSS (and traced bytes)."""
    import tracemalloc

    import tilec.passes as passes_pkg
    from tilec.targets import load_target

    import tilec.plan.pipeline as pipeline
    from tilec.capture import capture
    from tilec.compile import CompileOptions, lower, probe_source
    from tilec.plan import plan_model

    sampler = RssSampler()
    traced: dict[str, int] = {}
    secs: dict[str, float] = {}
    state = {"t": 0.0}

    def mark(stage: str) -> None:
        now = time.perf_counter()
        secs[stage] = secs.get(stage, 0.0) + now - state["t"]
        state["t"] = now
        sampler.mark(stage)
        if trace:
            traced[stage] = max(traced.get(stage, 0), tracemalloc.get_traced_memory()[1])
            tracemalloc.reset_peak()

    # The proof's work: the Verifier's own steps. Everything else in run_pipeline is "lower".
    verifier_cls = passes_pkg.Verifier

    def as_proof(fn):
        def wrapped(*a, **k):
            mark("lower")
            try:
                return fn(*a, **k)
            finally:
                mark("proof")
        return wrapped

    def tick(fn):
        def wrapped(timings, stage, t0):
            mark("verify" if stage == "verify" else "plan")
            return fn(timings, stage, t0)
        return wrapped

    target = load_target(target_name)
    options = CompileOptions(batch=batch)
    rss0 = RssSampler.rss()
    if trace:
        tracemalloc.start()
    sampler.start()
    state["t"] = time.perf_counter()
    proof_methods = [m for m in ("__init__", "_check", "run_probe_pass", "check_decisions")
                     if hasattr(verifier_cls, m)]
    with (patched(pipeline, "_tick", tick),
          _many(verifier_cls, proof_methods, as_proof)):
        captured = capture(str(path), batch=batch)
        mark("capture")
        lowered = lower(captured, target, options, probe=probe_source(str(path), captured))
        mark("lower")
        plan = plan_model(lowered.info, target, options=options, passes=lowered.passes,
                          stage_seconds=dict(lowered.seconds))
        mark("plan")
    sampler.stop()
    if trace:
        tracemalloc.stop()
    return {"secs": secs, "rss": dict(sampler.stages), "traced": traced, "rss0": rss0,
            "status": plan.status, "runs": _proof_runs(lowered)}


@contextmanager
def _many(obj: object, names: list[str], wrapper):
    originals = {n: getattr(obj, n) for n in names}
    for n in names:
        setattr(obj, n, wrapper(originals[n]))
    try:
        yield
    finally:
        for n, f in originals.items():
            setattr(obj, n, f)


def _proof_runs(lowered) -> str:
    notes = [n for s in lowered.pass_stats for n in s.notes if n.startswith("verification")]
    return notes[-1] if notes else "no proof"


def profile_band(path: Path, target_name: str, top: int = 25) -> None:
    """Compile at batch 1 without the band, then run the band on that plan under cProfile and
    print its wall time and the functions it spends it in (cumulative, tilec's own first)."""
    import cProfile
    import io
    import pstats

    from tilec.targets import load_target

    from tilec.compile import CompileOptions, band_of, compile_model

    options = CompileOptions(batch=1)
    plan, lowered = compile_model(str(path), load_target(target_name), options)
    if plan.status != "fits":
        print(f"\nband profile: the batch-1 plan does not fit ({plan.status}); no band")
        return
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    band = band_of(plan, lowered, CompileOptions(batch=1, band=True))
    prof.disable()
    wall = time.perf_counter() - t0
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).sort_stats("cumulative")
    stats.print_stats(r"tilec|targets|passes|ortools", top)
    settings = band.settings if band is not None else []
    by: dict[str, int] = {}
    for st in settings:
        by[st.by] = by.get(st.by, 0) + 1
    print(f"\nband on the batch-1 plan (in-process, cProfile on): {wall:.2f} s wall; status "
          f"{band.status if band is not None else 'none'}; {len(settings)} settings decided by "
          f"{', '.join(f'{k} x{v}' for k, v in sorted(by.items()))}")
    lines = out.getvalue().splitlines()
    start = next((i for i, x in enumerate(lines) if "ncalls" in x), 0)
    print("\n".join(x.replace(str(Path(__file__).resolve().parents[1]) + "/", "")
                    for x in lines[start:] if x.strip()))


# ----------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov4-p5")
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--target", default="gc200")
    ap.add_argument("--batches", default=None,
                    help="comma list (default 1,2,8; p7: 1); 0 skips the compile processes")
    ap.add_argument("--repeat", type=int, default=1, help="compiles per batch (median kept)")
    ap.add_argument("--no-stages", action="store_true", help="skip the in-process stage run")
    ap.add_argument("--stage-batch", type=int, default=1)
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--lower", action="store_true",
                    help="also time `tilec lower FILE --verify pass` (and --verify off)")
    ap.add_argument("--head", choices=("detect", "raw"), default="detect",
                    help="detect: outputs viewed as [bs, anchors, ny, nx, 85] like the official "
                         "Detect layer in export mode (default); raw: the zoo's conv maps")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--exporter", choices=("torchscript", "dynamo", "both"),
                    default="torchscript",
                    help="torch.onnx.export with dynamo=False (default; the figures of issue "
                         "13), dynamo=True (torch 2.13's default), or both, one after the other")
    ap.add_argument("--mish", choices=("decomposed", "module"), default="decomposed",
                    help="Mish written as x * tanh(softplus(x)) (default) or nn.Mish kept")
    ap.add_argument("--static-batch", action="store_true",
                    help="export without a dynamic batch axis (the exporter's plain default)")
    ap.add_argument("--band", choices=("on", "off", "both"), default="both",
                    help="the compiles with the uncertainty band (the CLI default), without it "
                         "(the capture / lower / proof / plan / verify cost alone), or both "
                         "(default)")
    ap.add_argument("--what-if", choices=("on", "off", "both"), default="on",
                    help="the compiles with the what-if search of a plan that does not fit (the "
                         "CLI default, on), with --no-what-if (off), or both")
    ap.add_argument("--profile-band", action="store_true",
                    help="cProfile the band once on the batch-1 plan (in-process) and print "
                         "where its time goes")
    args = ap.parse_args(argv)

    size = args.image_size or DEFAULT_SIZE.get(args.model, 640)
    batches = [int(b) for b in (args.batches or ("1" if args.model == "yolov4-p7"
                                                  else "1,2,8")).split(",")]
    exporters = ["torchscript", "dynamo"] if args.exporter == "both" else [args.exporter]
    batch_axis = "static" if args.static_batch else "dynamic"
    for i, exporter in enumerate(exporters):
        if i:
            print()
        path = make_export(args.model, size, args.head, exporter, args.mish, batch_axis)
        print(f"== {exporter} export")
        print(describe(path))
        run_benchmarks(args, path, batches)
    return 0


def run_benchmarks(args: argparse.Namespace, path: Path, batches: list[int]) -> None:
    """The timed compiles, the optional lower / band profile, the in-process stage run."""
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (shared: "
          "wall times are inflated)")
    if args.export_only:
        return

    settings = [(band, wi) for band in (("off", "on") if args.band == "both" else (args.band,))
                for wi in (("on", "off") if args.what_if == "both" else (args.what_if,))]
    for band, wi in settings if any(b > 0 for b in batches) else ():
        flags = ["--band", band] + ([] if wi == "on" else ["--no-what-if"])
        print(f"\ntilec compile {path.name} --target {args.target} --batch B {' '.join(flags)}  "
              f"(/usr/bin/time -v; band {band}, what-if {wi})")
        print(f"{'batch':>5} {'wall s':>8} {'cpu s':>7} {'peak RSS GB':>12} {'exit':>5}  "
              "last line")
        for b in (b for b in batches if b > 0):
            runs = [timed_compile(path, args.target, b, flags)
                    for _ in range(args.repeat)]
            runs.sort(key=lambda r: r["wall"])
            r = runs[len(runs) // 2]
            sig = f" (signal {r['signal']})" if r["signal"] else ""
            print(f"{b:>5} {r['wall']:>8.2f} {r['cpu']:>7.2f} {r['rss_gb']:>12.2f} "
                  f"{r['exit']:>5}  {r['last']}{sig}", flush=True)

    if args.lower:
        out = path.with_suffix(".lowered.onnx")
        for mode in ("pass", "off"):
            cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "tilec", "lower", str(path),
                   "--batch", "1", "-o", str(out), "--verify", mode]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
            rss = int(m.group(1)) / 2**20 if m else float("nan")
            cpu = sum(float(x) for x in re.findall(
                r"(?:User|System) time \(seconds\): ([\d.]+)", proc.stderr))
            print(f"tilec lower FILE --batch 1 -o OUT --verify {mode}: {wall:.2f} s wall, "
                  f"{cpu:.2f} s CPU, {rss:.2f} GB peak RSS, exit {proc.returncode}", flush=True)
        out.unlink(missing_ok=True)

    if args.profile_band:
        profile_band(path, args.target)

    if not args.no_stages:
        r = stage_run(path, args.target, args.stage_batch, args.tracemalloc)
        print(f"\nin-process, batch {args.stage_batch} (no band, no what-if): status "
              f"{r['status']}; {r['runs']}")
        print(f"RSS before capture {r['rss0'] / 2**30:.2f} GB (imports)")
        head = f"{'stage':<8} {'wall s':>8} {'peak RSS GB':>12}"
        print(head + (f" {'traced peak GB':>15}" if r["traced"] else ""))
        for stage in ("capture", "lower", "proof", "plan", "verify"):
            line = (f"{stage:<8} {r['secs'].get(stage, 0.0):>8.2f} "
                    f"{r['rss'].get(stage, 0) / 2**30:>12.2f}")
            if r["traced"]:
                line += f" {r['traced'].get(stage, 0) / 2**30:>15.2f}"
            print(line)


if __name__ == "__main__":
    sys.exit(main())
