"""Time of ``tilec sweep``: cold and warm, against the same envelope by separate compiles.

The issue's envelope: ``tilec sweep yolov4-p5 --target gc200 --image-size 128:1280:32
--precision fp16,fp32`` (37 sizes x 2 precisions: latency at batch 1 and the largest batch that
fits, searched up to 64). Printed:

* cold: an empty sweep cache (the zoo's exported model is cached beforehand, outside the timing:
  exporting YOLOv4-P5 from PyTorch is ``benchmarks/zoo_export_time.py``'s figure);
* warm: the same command again (every configuration from the cache: nothing captured, lowered
  or planned; the time left is start-up, the plots and the page);
* baseline: separate ``tilec compile ... --batch 1 --no-what-if`` calls at a few points (each
  captures, lowers with the onnxruntime proof and plans), their mean extrapolated to the grid's
  batch-1 points, and to the batch search done by compiles (1 + log2(64) = 7 compiles per
  image size and precision, a bisection).

Goal (issue 15): <= 120 s cold and <= 10 s warm on a 2-core machine. Times are wall clock and
depend on the machine's load (the load average is printed; CPU seconds too).

Run: ``python benchmarks/sweep_time.py [--image-size 128:1280:32] [--precision fp16,fp32]
[--baseline 3] [--jobs N] [--no-cold]``
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL, TARGET = "yolov4-p5", "gc200"


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the command and its children, last output line)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1):
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    lines = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    return wall, cpu, lines[-1] if lines else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image-size", default="128:1280:32")
    ap.add_argument("--precision", default="fp16,fp32")
    ap.add_argument("--baseline", type=int, default=3, help="separate compiles to time")
    ap.add_argument("--jobs", "-j", type=int, default=None)
    ap.add_argument("--no-cold", action="store_true", help="skip the cold run (use --cache)")
    ap.add_argument("--cache", default=None, help="sweep cache (default: a fresh temp dir)")
    args = ap.parse_args()

    from tilec.sweep.grid import parse_sizes

    sizes = parse_sizes(args.image_size)
    precisions = args.precision.split(",")
    groups = len(sizes) * len(precisions)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
          "(other work inflates every time below)")
    # the exported model cached, outside the timing (the sweep captures at the model's size)
    subprocess.run([sys.executable, "-c", f"from tilec.capture import capture; "
                    f"capture({MODEL!r}, batch=1)"], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="tilec-sweep-bench-"))
    cache = args.cache or str(tmp / "cache")
    cmd = [sys.executable, "-m", "tilec", "sweep", MODEL, "--target", TARGET, "--image-size",
           args.image_size, "--precision", args.precision, "--cache", cache, "--out",
           str(tmp / "out"), "-q"]
    if args.jobs:
        cmd += ["-j", str(args.jobs)]
    print(f"sweep: {len(sizes)} sizes x {len(precisions)} precisions = {groups} searches + "
          f"{groups} batch-1 points")
    if not args.no_cold:
        wall, cpu, _ = timed(cmd)
        print(f"  cold: {wall:7.1f} s wall, {cpu:7.1f} s CPU   (goal <= 120 s)")
    wall, cpu, _ = timed(cmd)
    print(f"  warm: {wall:7.1f} s wall, {cpu:7.1f} s CPU   (goal <= 10 s)")
    print(f"  outputs: {tmp / 'out'}")

    if args.baseline > 0:
        n = min(args.baseline, len(sizes))
        picks = [sizes[round(i * (len(sizes) - 1) / max(1, n - 1))] for i in range(n)]
        walls = []
        for h, w in picks:
            p = precisions[0]
            bw, bc, _ = timed([sys.executable, "-m", "tilec", "compile", MODEL, "--target",
                               TARGET, "--batch", "1", "--image-size", f"{h}x{w}",
                               "--precision", p, "--no-what-if", "-q"])
            walls.append(bw)
            print(f"  baseline: tilec compile {MODEL} {h} px b1 {p}: {bw:6.1f} s wall, "
                  f"{bc:6.1f} s CPU")
        mean = sum(walls) / len(walls)
        per_search = 1 + math.ceil(math.log2(64))
        print(f"  baseline extrapolated: batch-1 points {mean * groups:7.0f} s; with the batch "
              f"search by compiles ({per_search} per size and precision) "
              f"{mean * groups * per_search:7.0f} s (one process; /2 on two cores)")


if __name__ == "__main__":
    main()
