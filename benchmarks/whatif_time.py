"""Time of the what-if search, per question, with its probes and answers.

Out-of-memory cases (the issue's): ``yolov4-p5`` batch 2 on gc200 (the calibration's
out-of-memory point), ``yolov4`` on gc2 (256 KiB tiles), ``yolov4`` batch 8 on northpole (int8),
and ``yolov4-p7`` on northpole (too big at any batch or size). Headroom cases (a model that fits,
what-if forced as ``tilec compile --what-if`` does): ``yolov4-p5`` batch 1 at 896 on gc200 (the
calibration's largest fitting point) and ``yolov4-tiny`` batch 1 on gc200 (room to spare). Each
case is compiled once (the zoo export is cached first, outside the timing) and printed as:

    compile wall / CPU seconds, and the what-if's share
    per question: seconds, probes (decided by the bounds alone / by a re-plan), answer, status
    the note shown to the user

Goal: ``tilec compile yolov4-p5 --target gc200 --batch 2`` (warm zoo cache) under ~8 s wall on
an unloaded 2-core machine, every answer exact. A headroom search runs only on request, so its
time is not on a fitting compile's path; it should stay within the same order. Times are wall
clock and vary with machine load (CPU time is printed too); the answers are deterministic.

Run: ``python benchmarks/whatif_time.py [--case NAME ...]``
"""

from __future__ import annotations

import argparse
import time

CASES = {
    "yolov4-p5 b2 gc200": ("yolov4-p5", "gc200", 2, None),
    "yolov4 b1 gc2": ("yolov4", "gc2", 1, None),
    "yolov4 b8 northpole": ("yolov4", "northpole", 8, None),
    "yolov4-p7 b1 northpole": ("yolov4-p7", "northpole", 1, None),
    # headroom (fits; what-if forced)
    "fits: yolov4-p5 b1 gc200": ("yolov4-p5", "gc200", 1, None),
    "fits: yolov4-tiny b1 gc200": ("yolov4-tiny", "gc200", 1, None),
}


def run_case(model: str, target: str, batch: int, precision: str | None) -> None:
    import tilec.plan.whatif as whatif
    from tilec.compile import CompileOptions, compile_model
    from tilec.report.data import fmt_answer

    # warm the zoo export cache (not part of the figure)
    compile_model(model, target, CompileOptions(batch=batch, precision=precision,
                                                what_if=False))
    per_question: dict[str, float] = {}
    names = {"_max_batch": "max_batch", "_max_image_size": "max_image_size",
             "_min_bytes": "min_bytes_per_tile", "_min_precision": "min_precision",
             "_grow_batch": "max_batch", "_grow_image_size": "max_image_size",
             "_precision_up": "min_precision"}
    originals = {n: getattr(whatif, n) for n in names}

    def timed(name: str):
        fn = originals[name]

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                per_question[names[name]] = time.perf_counter() - t0
        return wrapper

    for n in names:
        setattr(whatif, n, timed(n))
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        plan, _ = compile_model(model, target, CompileOptions(batch=batch, precision=precision,
                                                              what_if_fits=True))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        for n, fn in originals.items():
            setattr(whatif, n, fn)
    t = plan.timings
    print(f"\n== {model} on {target}, batch {batch}: {plan.status}")
    print(f"compile {wall:.2f} s wall, {cpu:.2f} s CPU (capture {t.get('capture', 0):.2f}, "
          f"lower {t.get('lower', 0):.2f}, plan {t.get('plan', 0):.2f}, "
          f"what-if {t.get('what_if', 0):.2f})")
    answers = plan.diagnosis.what_if if plan.diagnosis else plan.what_if
    if not answers:
        return
    if not plan.diagnosis:
        print("headroom (the model fits):")
    print(f"{'question':<20} {'s':>6} {'bounds':>6} {'plans':>6}  answer [status]")
    for w in answers:
        by = [p.get("by") for p in w.probes]
        print(f"{w.question:<20} {per_question.get(w.question, 0):6.2f} "
              f"{by.count('bounds'):6d} {by.count('plan'):6d}  "
              f"{fmt_answer(w.question, w.answer)} [{w.status}]")
        print(f"{'':<42}{w.note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", action="append", choices=sorted(CASES), default=None)
    args = ap.parse_args()
    for name in args.case or list(CASES):
        run_case(*CASES[name])


if __name__ == "__main__":
    main()
