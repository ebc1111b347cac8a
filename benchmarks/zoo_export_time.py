"""Cold and cached export + capture time of a zoo model (default: yolov4-p5 at 896 px, batch 1).

What a user waits for on ``tilec compile yolov4-p5`` before planning starts:

* **cold** -- empty cache: build the PyTorch model with its seeded weights and calibrate its
  BatchNorm statistics, trace it with torch.fx, propagate fake tensors and write ONNX
  (:func:`tilec.zoo.export`), then capture the file (:func:`tilec.capture.capture_onnx`);
* **cached** -- the file is in the cache: only the capture.

Each measurement runs in a fresh Python process (so the cold figure includes ``import torch`` and
PyTorch's one-time fake-tensor warm-up, as a user's first run does) with ``TILEC_CACHE_DIR``
pointing at a temporary directory. The cold run is broken down by timing the real code path's
functions (``ZooSpec.build``, ``module_to_onnx``, ``write_atomically``) while
``tilec.capture(NAME)`` runs.
The machine's load average is printed too: on a shared 2-core box it moves every figure.

Run: ``python benchmarks/zoo_export_time.py [--name yolov4-p5] [--image-size 896] [--batch 1]
[--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def _child(name: str, image_size: int | None, batch: int) -> dict[str, float]:
    """Run one ``tilec.capture(name)`` and report where the time went (seconds)."""
    t0 = time.perf_counter()
    import torch  # noqa: F401 - timed on purpose: a first run pays for it

    import tilec
    from tilec.capture import fx
    from tilec.zoo import cache
    from tilec.zoo.registry import ZooSpec

    timings = {"import": time.perf_counter() - t0, "build": 0.0, "convert": 0.0, "write": 0.0}

    def timed(owner: object, attr: str, key: str) -> None:
        original = getattr(owner, attr)

        def wrapper(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timings[key] += time.perf_counter() - start

        setattr(owner, attr, wrapper)

    timed(ZooSpec, "build", "build")
    timed(fx, "module_to_onnx", "convert")
    timed(cache, "write_atomically", "write")
    start = time.perf_counter()
    captured = tilec.capture(name, image_size=image_size, batch=batch)
    timings["export+capture"] = time.perf_counter() - start
    timings["capture"] = (timings["export+capture"] - timings["build"] - timings["convert"]
                          - timings["write"])
    timings["nodes"] = float(len(captured.graph.nodes))
    return timings


def _run_child(args: argparse.Namespace, cache_dir: str) -> dict[str, float]:
    env = {**os.environ, "TILEC_CACHE_DIR": cache_dir}
    cmd = [sys.executable, __file__, "--child", "--name", args.name, "--batch", str(args.batch)]
    if args.image_size:
        cmd += ["--image-size", str(args.image_size)]
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="yolov4-p5")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="cold and cached runs to time")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.name, args.image_size, args.batch)))
        return

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.name}, image size {args.image_size or 'default'}, batch {args.batch}; "
          f"{os.cpu_count()} CPUs, load average {load:.2f}")
    colds, cached = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="tilec-zoo-bench-") as cache_dir:
            colds.append(_run_child(args, cache_dir))
            cached.append(_run_child(args, cache_dir))
            size = sum(f.stat().st_size for f in os.scandir(os.path.join(cache_dir, "zoo"))
                       if f.name.endswith(".onnx"))
    print(f"  ONNX file: {size / 2**20:.1f} MiB, {int(colds[0]['nodes'])} nodes; "
          f"{args.repeat} runs each, fresh process per run")

    def fig(runs: list[dict[str, float]], key: str) -> str:
        values = [r[key] for r in runs]
        return f"{statistics.median(values):.2f} (best {min(values):.2f})"

    print(f"  cold   export+capture {fig(colds, 'export+capture')} s")
    for key, label in (("build", "build + seeded weights + BN calibration"),
                       ("convert", "fx trace + fake-tensor shapes + ONNX emit"),
                       ("write", "serialise + write"), ("capture", "ONNX capture")):
        print(f"           {label:42s} {fig(colds, key)} s")
    print(f"  cached export+capture {fig(cached, 'export+capture')} s")
    print(f"  per process: import torch + tilec {fig(colds + cached, 'import')} s; whole "
          f"process cold {fig(colds, 'process')} s, cached {fig(cached, 'process')} s")
    if hasattr(os, "getloadavg"):
        print(f"  load average after: {os.getloadavg()[0]:.2f} (figures are median (best) of "
              "the runs; the best is what an idle machine gives)")

if __name__ == "__main__":
    main()
