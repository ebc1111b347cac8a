"""Time of `tilec compile --precision auto`: cold (sensitivity measured) and cached.

    python benchmarks/precision_auto_time.py   # yolov4-p5, gc200, 1152 px, batch 1, auto:int4
    python benchmarks/precision_auto_time.py --model yolov4-tiny --target northpole \
        --image-size 416 --precision auto

Runs the whole choice twice in one process with a fresh sensitivity cache: the first run
measures every layer on onnxruntime (cold), the second reads the table back (cached); the zoo
export comes from $TILEC_CACHE_DIR as usual (run once before to keep it out of the cold
figure). Per stage: lowering (capture, exact passes, proof), sensitivity (measure or read, plus
the entropy proxy), the byte terms (the planner's partition at each candidate precision), the
knapsack solves, the confirmation plans. Wall-clock and CPU seconds; the machine may be
shared, so compare CPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tilec.targets import load_target

from tilec.compile import CompileOptions
from tilec.precision import sensitivity
from tilec.precision.auto import compile_auto


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov4-p5")
    ap.add_argument("--target", default="gc200")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=1152)
    ap.add_argument("--precision", default="auto:int4")
    ap.add_argument("--sensitivity", default="measured", choices=("measured", "entropy"))
    args = ap.parse_args()
    target = load_target(args.target)
    with tempfile.TemporaryDirectory() as cache:
        # a fresh sensitivity cache (the zoo's exports stay where $TILEC_CACHE_DIR has them)
        sensitivity.cache_dir = lambda: Path(cache)
        for label in ("cold", "cached"):
            opts = CompileOptions(batch=args.batch, image_size=args.image_size, what_if=False)
            w0, c0 = time.perf_counter(), time.process_time()
            plan, _, run = compile_auto(args.model, target, opts, spec_text=args.precision,
                                        method=args.sensitivity)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            res = run.result
            stages = " ".join(f"{k} {v:.1f}s" for k, v in run.timings.items())
            print(f"{label:6s} {args.model} {args.target} b{args.batch} {args.image_size}px "
                  f"{args.precision}: {plan.status}, verdict {res['verdict']}, "
                  f"{res['layers']} layers, {res['sensitivity']['runs']} onnxruntime runs (cached: "
                  f"{run.cached}), "
                  f"{len(res['rounds'])} rounds -- wall {wall:.1f} s, CPU {cpu:.1f} s")
            print(f"       stages: {stages}")


if __name__ == "__main__":
    main()
