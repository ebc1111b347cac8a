"""Are the lower bounds (a) ``chip_capacity`` and (b) ``op_too_large`` monotone in the shape?

For one model and target, the lowered graph is reshaped (``tilec.compile.reshaped``, no capture)
to every batch or image size of a sweep; each is partitioned and its bounds computed (no
placement). Printed per configuration: the bytes (a) needs as a fraction of the chip, the bytes
(b) needs as a fraction of one tile's budget, the ops that set them, and every step where a
bound *drops* although the configuration grew -- with the ops whose minimum bytes drop and the
term that drops (``always`` / ``step`` totals, the finest split's per-tile peak).

With ``--relaxations`` (cost models built on ``targets/base.py``), (a) is also computed over two
supersets of the splits the policy offers, each op's terms at their minimum over

* ``window``: every split at the op's largest offered tile count within ``fastest_slack`` of the
  fastest offered (not only the few the selection keeps);
* ``chip``: every split the cost model enumerates at that tile count (whatever its speed).

Both are still lower bounds (a superset can only lower a minimum); they show how much of (a)'s
strength comes from the ``fastest`` window, and whether a looser bound would grow with the shape.
With ``--certificate``, the monotone certificate (m) (``tilec/plan/ceiling.py``: weights and
necessarily-live activations at storage bytes) too, as a fraction of the chip: it grows by
construction, and this shows how far it trails (a).

The what-if headroom search may call an answer ``exact`` only when (a) and (b) never drop
(``CostModel.bounds_monotone``); this script is how that claim is checked before a cost model
declares it (issue 12, item 3). Timings are not the point; the figures are deterministic.

Run: ``python benchmarks/bounds_monotone.py yolov4-p5 --target gc200 --axis batch --fixed 320``
     ``python benchmarks/bounds_monotone.py resnet50 --target northpole --axis size``
"""

from __future__ import annotations

import argparse
import time


def op_terms(part) -> dict[str, tuple[int, int, int]]:
    """Per op: (finest split's per-tile peak, smallest always total, smallest step total) --
    the per-op minima the bounds are built from."""
    out = {}
    for name, oc in part.ops.items():
        out[name] = (oc.finest.charged_peak(part.charged[name]),
                     min(c.always * c.tiles + c.spread for c in oc.proof),
                     min(c.step * c.tiles for c in oc.proof))
    return out


def relaxed_chip_bound(info, target, part, mode: str) -> int:
    """(a) with each single-output op's always / step / output totals at their minimum over a
    superset of its offered splits (``mode``: "window" or "chip", see the module docstring)."""
    from dataclasses import replace

    import numpy as np

    from tilec.plan.bounds import chip_bound

    cm = target.cost_model
    big = 1 << 60
    ops = dict(part.ops)
    for op in info.ops:
        oc = ops[op.name]
        if op.kind == "view" or oc.follows_input or len(op.outputs) != 1:
            continue
        count = max(c.tiles for c in oc.proof)
        fastest = min(c.cycles for c in oc.proof)
        key = cm._signature(op)
        terms = None
        for t, blk in zip(cm.tile_counts(op), cm._blocks_cached(op, key), strict=True):
            if t != count or not len(blk):
                continue
            keep = (np.ones(len(blk), dtype=bool) if mode == "chip"
                    else blk.cycles <= fastest * (1.0 + cm.slack))
            if keep.any():
                out = blk.peak - blk.always - blk.step
                terms = (int(blk.always[keep].min()), int(blk.step[keep].min()),
                         int(out[keep].min()))
        if terms is None:
            continue
        a, st, o = terms
        c = oc.proof[0]
        extra = (replace(c, tiles=count, always=a, step=big, outputs=(big,), spread=0),
                 replace(c, tiles=count, always=big, step=st, outputs=(big,), spread=0),
                 replace(c, tiles=count, always=big, step=big, outputs=(o,), spread=0))
        ops[op.name] = replace(oc, proof=tuple(oc.proof) + extra)
    return chip_bound(info, replace(part, ops=ops), target).needed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--target", default="gc200")
    ap.add_argument("--axis", choices=("batch", "size"), default="batch")
    ap.add_argument("--fixed", type=int, default=None,
                    help="image size of a batch sweep / batch of a size sweep")
    ap.add_argument("--values", default=None,
                    help="comma-separated values (default: batch 1..16, sizes 128..1536 by 64)")
    ap.add_argument("--precision", default=None)
    ap.add_argument("--certificate", action="store_true",
                    help="also the monotone certificate (m) (tilec/plan/ceiling.py)")
    ap.add_argument("--relaxations", action="store_true",
                    help="also (a) over the 'window' and 'chip' supersets of the offered splits")
    args = ap.parse_args()

    from tilec.targets import load_target

    from tilec.compile import CompileOptions, compile_model, reshaped
    from tilec.plan.partition import partition
    from tilec.plan.pipeline import lower_bounds

    target = load_target(args.target)
    opts = {"batch": 1, "image_size": 224, "what_if": False}
    if args.precision:
        opts["precision"] = args.precision
    _, lowered = compile_model(args.model, target, CompileOptions(**opts))
    if args.values:
        values = [int(v) for v in args.values.split(",")]
    else:
        values = list(range(1, 17)) if args.axis == "batch" else list(range(128, 1537, 64))
    fixed = args.fixed or (224 if args.axis == "batch" else 1)
    chip = int(target.tiles) * int(target.budget_per_tile)
    tile = int(target.budget_per_tile)
    prev = None
    prev_rel: dict[str, int] = {}
    drops = 0
    t0 = time.perf_counter()
    for v in values:
        batch, size = (v, fixed) if args.axis == "batch" else (fixed, v)
        low = reshaped(lowered, batch, (size, size))
        if low is None:
            print(f"{args.axis} {v}: cannot be reshaped (captured again it would be; skipped)")
            continue
        part = partition(low.info, target)
        bd = lower_bounds(low.info, target, part)
        a, b = bd["a"], bd["b"]
        terms = op_terms(part)
        line = (f"batch {batch:3d} size {size:5d}:  (a) {a.needed / chip:7.4f} of the chip "
                f"(at {a.op})  (b) {b.needed / tile:7.4f} of a tile (at {b.op})")
        if args.certificate:
            from tilec.plan.ceiling import ceiling_bound

            line += f"  (m) {ceiling_bound(low.info, target).needed / chip:7.4f}"
        if args.relaxations:
            rel = {m: relaxed_chip_bound(low.info, target, part, m) for m in ("window", "chip")}
            line += "  relaxed (a): " + "  ".join(f"{m} {v / chip:7.4f}" for m, v in rel.items())
            for m, v in rel.items():
                if m in prev_rel and v < prev_rel[m]:
                    line += f"  [{m} DROPS]"
            prev_rel = rel
        if prev is not None:
            pa, pb, pterms = prev
            notes = []
            if a.needed < pa:
                notes.append(f"(a) DROPS {pa - a.needed:,} B")
            if b.needed < pb:
                notes.append(f"(b) DROPS {pb - b.needed:,} B")
            names = ("peak", "always", "step")
            low_ops = [(op, [n for n, x, y in zip(names, t, pterms[op], strict=True) if x < y])
                       for op, t in terms.items() if op in pterms]
            low_ops = [(op, ns) for op, ns in low_ops if ns]
            if low_ops:
                shown = "; ".join(f"{op} ({'/'.join(ns)})" for op, ns in low_ops[:3])
                notes.append(f"{len(low_ops)} ops' minima drop, e.g. {shown}")
            if notes:
                drops += any(n.startswith("(") for n in notes)
                line += "\n      " + " | ".join(notes)
        print(line, flush=True)
        prev = (a.needed, b.needed, terms)
    print(f"{drops} step(s) where (a) or (b) drops; {time.perf_counter() - t0:.1f} s "
          "(wall clock, shared machine)")


if __name__ == "__main__":
    main()
