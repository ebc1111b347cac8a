"""Time of the lowering pipeline on yolov4-p5 (goal: under 5 s on the 2-core reference machine).

Usage::

    python benchmarks/lower_time.py [--model yolov4-p5] [--target gc200] [--image-size 896]
                                    [--batch 1] [--repeat 3] [--modes pipeline,off,pass]

For each verification mode it captures the model afresh (capture is not timed: it is the same for
every mode and belongs to ``tilec compile``'s capture stage), runs the target's default pipeline
through :func:`tilec.passes.run_pipeline` and prints the wall time of the whole pipeline, the time
of each pass on the model, and what the onnxruntime proof cost. ``pipeline`` is the mode ``tilec
compile`` uses; ``off`` shows the passes alone; ``pass`` is ``tilec lower``'s default (each pass
proved on its own). The figure reported is the median wall time over ``--repeat`` runs; the CPU
time (all threads) is printed too, because on a shared machine wall time depends on the load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov4-p5")
    ap.add_argument("--target", default="gc200")
    ap.add_argument("--precision", default=None)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--modes", default="pipeline,off,pass")
    args = ap.parse_args(argv)

    from tilec.passes import run_pipeline
    from tilec.targets import load_target

    from tilec.capture import capture
    from tilec.compile import resolve_precision

    target = load_target(args.target)
    precision = resolve_precision(target, args.precision)
    passes = target.default_passes(precision)
    t0 = time.perf_counter()
    cap = capture(args.model, batch=args.batch, image_size=args.image_size)
    first_capture = time.perf_counter() - t0
    print(f"model {args.model} input {dict(cap.input_shapes)}, target {target.name} at "
          f"{precision}; {len(cap.graph.nodes)} nodes")
    print(f"passes: {', '.join(passes)}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; first "
          f"capture {first_capture:.2f} s (not counted)")
    print()
    print(f"{'mode':<9} {'median s':>9} {'min s':>7} {'cpu s':>7} {'passes s':>9} {'verify s':>9} "
          f"{'runs':>5}  probe / per pass (last run)")
    results = {}
    for mode in args.modes.split(","):
        totals, cpu, verify_s, pass_s = [], [], [], []
        for _ in range(args.repeat):
            cap = capture(args.model, batch=args.batch, image_size=args.image_size)
            summary: dict = {}
            t, c = time.perf_counter(), time.process_time()
            _, stats = run_pipeline(cap.graph, passes, precision=precision, verify=mode,
                                    source=cap.source, stride=cap.stride,
                                    act_bits=target.act_bits, summary=summary)
            totals.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            verify_s.append(summary["seconds"])
            pass_s.append(sum(s.seconds for s in stats))
        per_pass = ", ".join(f"{s.name} {s.seconds:.2f}" for s in stats)
        results[mode] = statistics.median(totals)
        print(f"{mode:<9} {statistics.median(totals):>9.2f} {min(totals):>7.2f} "
              f"{statistics.median(cpu):>7.2f} {statistics.median(pass_s):>9.2f} "
              f"{statistics.median(verify_s):>9.2f} "
              f"{summary['runs']:>5}  {summary['probe']} / {per_pass}")
    if "pipeline" in results and "off" in results:
        print(f"\nverification overhead in compile mode: "
              f"{results['pipeline'] - results['off']:.2f} s "
              f"({results['pipeline'] / max(results['off'], 1e-9):.1f}x the passes alone)")
    if "pipeline" in results:
        goal = "met" if results["pipeline"] < 5.0 else "NOT met"
        print(f"goal (< 5 s, compile mode): {goal} -- {results['pipeline']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
