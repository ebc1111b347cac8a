"""Wall time the uncertainty band adds to a compile, and what it says.

Cases: ``yolov4-p5`` at 896 px, batch 1 and 2, on gc200 (the calibration points). For each, one
compile with the band on (``CompileOptions(band=True)``, what ``tilec compile`` does by default)
prints the plan's own time, the band's (``plan.timings["band"]``), how many settings it
evaluated and how each was decided, and the band's verdict with its flips. Times are wall clock
and vary with machine load; the band itself is deterministic.

Run: ``python benchmarks/band_time.py [--case NAME ...]``
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

CASES = {
    "yolov4-p5@896 b1 gc200": ("yolov4-p5", "gc200", 1, 896),
    "yolov4-p5@896 b2 gc200": ("yolov4-p5", "gc200", 2, 896),
}


def main() -> None:
    from tilec.compile import CompileOptions, compile_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", action="append", choices=sorted(CASES), default=None)
    args = ap.parse_args()
    for name in args.case or list(CASES):
        model, target, batch, size = CASES[name]
        t0 = time.perf_counter()
        plan, _ = compile_model(model, target, CompileOptions(batch=batch, image_size=size,
                                                              what_if=False, band=True))
        wall = time.perf_counter() - t0
        band = plan.band
        assert band is not None
        how = Counter(s.by for s in band.settings)
        print(f"{name}: {plan.status}; plan {plan.timings.get('plan', 0):.1f} s, band "
              f"{plan.timings.get('band', 0):.1f} s, wall {wall:.1f} s; "
              f"{len(band.settings)} settings ("
              + ", ".join(f"{n} by {k}" for k, n in sorted(how.items())) + ")")
        print(f"  band: {band.summary}")
        if band.latency_min_seconds is not None:
            print(f"  latency over the band: {band.latency_min_seconds * 1e3:.2f} .. "
                  f"{band.latency_max_seconds * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
