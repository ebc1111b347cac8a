"""Plan quality: each plan's peak bytes per tile against a lower bound, as a gap in percent.

The lower bound (tilec.plan.bounds.quality_lower_bound) is the larger of

* *spread*: at the plan's worst step, every byte that must be live (always-live bytes of every op,
  the running op's step bytes, every live activation buffer -- each at its minimum total over all
  its splits) spread evenly over all tiles;
* *single op*: the largest minimum per-tile need of a single op over all its splits.

No placement can have a lower peak for this schedule, so ``gap = (peak - bound) / bound`` says how
much headroom the placer leaves on the table (it optimises latency first, then headroom, so a
plan that fits with room to spare is not pushed to the bound). Also printed: the latency of the
kept plan against the best greedy pass, and which search produced it.

Cases: the plan_time cases, plus a synthetic CSP network on a synthetic GC200-like chip (no zoo,
no torch) so the figure exists even without the real targets.

Run: ``python benchmarks/plan_quality.py [--case NAME ...]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CASES = {
    "yolov4-p5@896 b1 gc200": ("yolov4-p5", "gc200", 1, 896, None),
    "yolov4-p5@896 b2 gc200": ("yolov4-p5", "gc200", 2, 896, None),
    "yolov4@608 b1 gc200": ("yolov4", "gc200", 1, 608, None),
    "yolov4@608 b1 northpole int8": ("yolov4", "northpole", 1, 608, "int8"),
    "yolov4@608 b1 northpole int4": ("yolov4", "northpole", 1, 608, "int4"),
    "synthetic csp b1 synth-ipu": None,
}


def plan_case(name: str):
    from tilec.plan import plan_model

    spec = CASES[name]
    if spec is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from plan_fixtures import csp_network, synth_ipu_target

        class Opts:
            time_limit, what_if, seed, workers, progress = 10.0, False, 0, 2, None

        return plan_model(csp_network(batch=1), synth_ipu_target(), options=Opts())
    from tilec.compile import CompileOptions, compile_model

    model, target, batch, size, precision = spec
    plan, _ = compile_model(model, target, CompileOptions(
        batch=batch, image_size=size, precision=precision, what_if=False))
    return plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", action="append", choices=sorted(CASES), default=None)
    args = ap.parse_args()
    print(f"{'case':32} {'status':>12} {'peak B/tile':>12} {'bound':>10} {'gap':>7} "
          f"{'mem-first':>10} {'gap':>7} {'budget':>9} {'bound kind':>10} {'cycles':>11} "
          f"{'fastest':>11} kept")
    for name in args.case or list(CASES):
        plan = plan_case(name)
        b = plan.bounds
        peak = plan.memory.peak_bytes if plan.memory else 0
        bound = int(b.get("per_tile", 0))
        gap = (peak - bound) / bound * 100 if bound else float("nan")
        kind = "spread" if b.get("spread", 0) >= b.get("single_op", 0) else "single op"
        solver = plan.solver
        fastest = int(solver.bound) if solver and solver.bound is not None else 0
        kept = solver.details.get("kept", solver.method) if solver else "-"
        passes = solver.details.get("greedy", []) if solver else []
        mem = min((p["peak"] for p in passes
                   if ":memory:" in p["pass"] or p["pass"].endswith("mu=0")), default=peak)
        mgap = (mem - bound) / bound * 100 if bound else float("nan")
        print(f"{name:32} {plan.status:>12} {peak:>12,} {bound:>10,} {gap:>6.1f}% "
              f"{mem:>10,} {mgap:>6.1f}% {plan.target.budget_per_tile:>9,} {kind:>10} "
              f"{plan.latency.cycles:>11,} {fastest:>11,} {kept}", flush=True)
    print("\nbytes per tile. 'peak': the kept plan (latency first, then headroom); 'mem-first': "
          "the lowest peak of the memory-first passes (how tight the placer packs when it does "
          "not trade memory for speed); 'fastest': every op at its fastest split, a lower bound "
          "on 'cycles'. For plans that do not fit, 'peak' is the best attempt's.")


if __name__ == "__main__":
    main()
