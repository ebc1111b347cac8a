"""``tilec compile MODEL --precision auto[:FLOOR]``: sensitivity, knapsack, confirmation.

1. Capture and lower the model without ``quantize`` (the exact passes, proved as usual).
2. Sensitivity per layer and candidate precision (:mod:`tilec.precision.sensitivity`, cached),
   the EAGL entropy proxy beside it, and their rank agreement.
3. The planner's partition of the model at each uniform candidate precision, and from it the
   byte terms of the certificates (a) and (b) per layer and precision
   (:mod:`tilec.precision.knapsack`).
4. CP-SAT's multiple-choice knapsack: least summed sensitivity subject to (a) and (b). No map
   satisfies them: proven not to fit at any per-layer precision, with the constraint that no
   map can meet and by how much.
5. Confirm: a full compile (capture, passes with the map, proof, plan, verifier) of the chosen
   map. If it still does not fit (placement effects the bounds do not see), cut that map off --
   the next must save what the plan was over, in the bound it was closest to (:func:`_cut`) --
   and solve again, at most :data:`MAX_ROUNDS` full plans, then give up saying so.
6. The mixed model's end-to-end error, measured on onnxruntime like the sensitivities, next to
   each uniform precision's; weight bytes saved; the layers kept at the ceiling and why.

The candidates are the target's precisions from its default (the ceiling: fp16 on gc200, int8
on NorthPole) down to the floor (``auto:int4``) or its lowest. On NorthPole a layer's precision
is that of its weights *and* of the activations it stores (the target's ``act_bits``); on gc200
activations stay fp16 and only weight storage changes, which is what the measurement and the
byte terms follow.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx_graphsurgeon as gs

from tilec.costmodel import Target
from tilec.errors import InputError
from tilec.plan.model import STATUS_FITS, Plan
from tilec.precision import knapsack, sensitivity

MAX_ROUNDS = 4
"""Full plans the confirmation tries before giving up (modelling choice: each is a whole compile,
several seconds to a minute on a large model; on the zoo's cases one or two sufficed)."""

KEPT_SHOWN = 8
"""Layers kept at the ceiling listed in the result (the most sensitive first)."""

METHODS = ("measured", "entropy")


@dataclass(frozen=True)
class AutoSpec:
    text: str
    ceiling: str
    candidates: tuple[str, ...]  # highest first, ceiling first


def parse_spec(text: str, target: Target, ceiling: str | None = None) -> AutoSpec:
    """``auto`` or ``auto:FLOOR`` against ``target``'s precisions (bad spelling: one line);
    ``ceiling`` defaults to the target's default precision."""
    supported = list(target.precisions)
    ceiling = ceiling or target.default_precision
    below = supported[supported.index(ceiling):] if ceiling in supported else supported
    if text == "auto":
        floor = below[-1]
    elif text.startswith("auto:") and text[5:] in below:
        floor = text[5:]
    else:
        raise InputError(f"--precision: '{text}' is not auto or auto:FLOOR with FLOOR one of "
                         f"{', '.join(below)} ({target.name}'s precisions from its default "
                         f"{ceiling} down)")
    return AutoSpec(text, ceiling, tuple(below[: below.index(floor) + 1]))


# ----------------------------------------------------------------------------- the map file
def _glob_literal(name: str) -> str:
    """``name`` as an fnmatch pattern matching only itself."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def map_data(choice: dict[str, str], ceiling: str) -> dict[str, Any]:
    """The precision map (passes/_precision.py's plain-data form): the ceiling by default, every
    other layer by its exact name."""
    return {"default": ceiling,
            "layers": [[_glob_literal(n), p] for n, p in choice.items() if p != ceiling]}


def map_toml(data: dict[str, Any], header: list[str]) -> str:
    """The map as the TOML ``--precision-map`` reads."""
    lines = [f"# {h}" for h in header]
    lines.append(f"default = {json.dumps(data['default'])}")
    lines.append("")
    lines.append("[layers]")
    lines.extend(f"{json.dumps(glob)} = {json.dumps(p)}" for glob, p in data["layers"])
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the driver
@dataclass
class AutoRun:
    """What :func:`compile_auto` found (``to_dict`` is the plan's ``precision_auto``)."""

    spec: AutoSpec
    method: str
    result: dict[str, Any] = field(default_factory=dict)
    map_file: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    cached: bool = False  # the measured table was read from the cache (not in the plan's JSON)

    def to_dict(self) -> dict[str, Any]:
        return self.result


def _probe_instrument(low, model: Any, options, candidates, act_bits):
    """The proof's probe of the lowered float graph, instrumented (sensitivity.Instrument):
    re-shaped to batch 1 at the first probe size onnxruntime runs, else the source captured
    again at that size and lowered the same way, else batch 1 at the model's own size."""
    from tilec.capture import capture
    from tilec.passes import run_pipeline
    from tilec.passes._verify import BakedShape, probe_sizes, reshape_copy

    cap = low.captured
    sizes = probe_sizes(min(cap.image_size), cap.stride) if cap.image_size else []
    tried: list[str] = []
    for s in [*sizes, None]:
        graphs: list[gs.Graph] = []
        try:
            g = reshape_copy(low.graph, 1, s, cap.source)
            if g is not None:
                graphs.append(g)
        except BakedShape:
            pass
        if s is not None and not graphs:
            try:
                c2 = capture(model, batch=1, image_size=(s, s), input_shape=options.input_shape,
                             host_ops=options.host_ops)
                g, _ = run_pipeline(c2.graph, low.passes, precision=low.precision,
                                    source=c2.source, verify="off", act_bits=low.target.act_bits,
                                    stride=c2.stride)
                graphs.append(g)
            except InputError as exc:
                tried.append(str(exc))
        if s is None and not graphs:
            graphs.append(low.graph)
        for g in graphs:
            try:
                return g, sensitivity.Instrument(g, candidates, act_bits)
            except InputError:
                raise
            except Exception as exc:  # onnxruntime refused this shape: the next one
                tried.append(str(exc).splitlines()[0][:160])
    raise InputError(f"{cap.source}: onnxruntime cannot run the model at any probe size, so its "
                     f"sensitivity cannot be measured ({'; '.join(tried[-1:])}); use "
                     "--sensitivity entropy")


def _confirm_on(base: Any, target: Target, options, ceiling: str,
                map_file: dict[str, Any]) -> tuple[Plan, Any]:
    """The confirmation plan of ``map_file`` from ``base`` -- the model already captured and
    lowered by the exact passes (no ``quantize``) -- instead of a whole compile: a copy of its
    graph (weights shared by reference, not copied) goes through the pipeline from ``quantize``
    on, and is planned and verified like any compile. Nothing is captured again, so nothing but
    the shapes depends on the batch. The passes before ``quantize`` are not run again: they
    already ran on ``base``, and the pass after it (``concat-in-place``) only adds annotations
    and leaves Concats already marked alone, so the graph is the one a fresh compile with the map
    lowers (a test compares the two). No onnxruntime proof: the what-if's plans are not proved
    (the compile proved the exact passes on this graph)."""
    from dataclasses import replace

    from tilec.compile import Lowered, graph_info, pipeline
    from tilec.passes import load_precision_map, run_pipeline
    from tilec.plan import plan_model

    names = pipeline(target, ceiling, options.passes, map_file)
    tail = names[names.index("quantize"):]
    cap = base.captured
    graph, stats = run_pipeline(base.graph.copy(), tail, precision=ceiling,
                                precision_map=map_file, source=cap.source, verify="off",
                                act_bits=target.act_bits, stride=cap.stride)
    pmap = load_precision_map(map_file).to_dict()
    info = graph_info(graph, cap, target, ceiling, pmap)
    lowered = Lowered(captured=cap, target=target, graph=graph, info=info, precision=ceiling,
                      passes=names, pass_stats=[*base.pass_stats, *stats], precision_map=pmap)
    plan = plan_model(info, target, options=replace(options, what_if=False, what_if_fits=False,
                                                    band=False),
                      passes=names)
    return plan, lowered


def compile_auto(model: Any, target: Target, options, *, spec_text: str,
                 method: str = "measured", ceiling: str | None = None,
                 max_rounds: int = MAX_ROUNDS, base: Any = None) -> tuple[Plan, Any, AutoRun]:
    """Choose, confirm and report a per-layer precision map (module docstring).

    ``base``: the model already captured and lowered at ``ceiling`` by the same passes without
    ``quantize`` (a :class:`tilec.compile.Lowered`, e.g. the compile's own). It is then neither
    captured nor lowered again, and the confirmation plans start from it (:func:`_confirm_on`):
    the OOM what-if's path, whose cost must not grow with the batch.

    Returns the final plan (the confirmed map's, or the last attempt's / the lowest uniform
    precision's diagnosis), its lowered model and the :class:`AutoRun`."""
    from dataclasses import replace

    from tilec.capture import capture
    from tilec.compile import band_of, compile_model, graph_info, lower, probe_source
    from tilec.plan import plan_model
    from tilec.plan.partition import partition
    from tilec.plan.pipeline import lower_bounds

    cached_only = method == "cached"  # the what-if: measured if cached, else the proxy
    if cached_only:
        method = "entropy"
    if method not in METHODS:
        raise InputError(f"--sensitivity: unknown method '{method}' (one of {', '.join(METHODS)})")
    if options.precision_map is not None:
        raise InputError("--precision auto chooses the per-layer map itself; drop "
                         "--precision-map (or give a fixed --precision)")
    spec = parse_spec(spec_text, target, ceiling)
    run = AutoRun(spec, method)
    cands = list(spec.candidates)
    progress = options.progress
    tm = run.timings
    t0 = time.perf_counter()
    names = [n for n in (options.passes or target.default_passes(spec.ceiling))
             if n != "quantize"]
    if base is not None:
        if base.precision != spec.ceiling or base.precision_map is not None or \
                "quantize" in base.passes:
            raise ValueError("compile_auto: base must be lowered at the ceiling, unquantized")
        low, captured = base, base.captured
    else:
        captured = capture(model, batch=options.batch, image_size=options.image_size,
                           input_shape=options.input_shape, host_ops=options.host_ops)
        if progress:
            progress("lowering", None)
        low = lower(captured, target, replace(options, precision=spec.ceiling, passes=names,
                                              precision_map=None),
                    probe=probe_source(model, captured, options.input_shape))
    tm["lower"] = time.perf_counter() - t0
    layers, _ = sensitivity.find_layers(low.graph)
    if not layers:
        raise InputError(f"{captured.source}: --precision auto: the model has no layer with a "
                         "float weight to choose a precision for")

    # 2. sensitivity
    t0 = time.perf_counter()
    if progress:
        progress("sensitivity", None)
    probe, inst = _probe_instrument(low, model, options, cands, target.act_bits)
    key = sensitivity.graph_key(probe, cands, target.act_bits)
    measured = sensitivity.load_cached(key)
    if measured is None and method == "measured":
        measured = sensitivity.measure(inst, cands, progress)
        measured.key = key
        sensitivity.store(measured)
    proxy = sensitivity.entropy(probe, cands, codes=inst.codes)
    if cached_only and measured is not None:
        method = "measured"
    table = measured if method == "measured" else proxy
    agreement = sensitivity.rank_agreement(measured, proxy) if measured is not None else None
    tm["sensitivity"] = time.perf_counter() - t0

    # 3. the byte terms
    t0 = time.perf_counter()
    if progress:
        progress("precision terms", None)
    infos = {p: graph_info(low.graph, captured, target, p) for p in cands}
    parts = {p: partition(infos[p], target) for p in cands}
    layer_names = [r.name for r in layers]
    mm = knapsack.memory_model(infos, parts, target, layer_names, cands)
    icosts = knapsack.integer_costs({n: [table.cost(n, p) for p in cands]
                                     for n in layer_names})
    uniform: dict[str, dict[str, Any]] = {}
    for k, p in enumerate(cands):
        bad = mm.violations(mm.uniform(k))
        bd = lower_bounds(infos[p], target, parts[p])  # the uniform model (every op at p)
        held = [b for b in ("b", "a") if bd[b].holds]
        uniform[p] = {"bounds": _bounds_word(bad), "uniform_bounds": held[0] if held else None,
                      "error": inst.error(dict.fromkeys(layer_names, p)).to_dict()}
    tm["terms"] = time.perf_counter() - t0

    # 4.-5. solve, confirm, tighten
    rounds: list[dict[str, Any]] = []
    plan: Plan | None = None
    lowered = low
    verdict, reason = "", ""
    choice: dict[str, str] | None = None
    t0 = time.perf_counter()
    for rnd in range(max_rounds):
        if progress:
            progress(f"knapsack round {rnd + 1}", None)
        ts = time.perf_counter()
        sol = knapsack.solve(mm, icosts, time_limit=max(5.0, float(options.time_limit)),
                             seed=int(options.seed))
        tm["solve"] = tm.get("solve", 0.0) + time.perf_counter() - ts
        entry: dict[str, Any] = {"round": rnd + 1, "margin_tile": mm.margin_tile,
                                 "margin_chip": mm.margin_chip, "solver": sol.status}
        rounds.append(entry)
        if sol.choice is None:
            if rnd == 0 and sol.optimal:
                verdict = "none"
                reason = _why_none(mm)
            elif sol.optimal:
                verdict = "gave_up"
                reason = (f"no map saves the {rounds[-2].get('need', 0):,} B "
                          f"({rounds[-2].get('cut')}) more that the last plan needed, as the "
                          "bounds (a)/(b) count them")
            else:
                verdict = "gave_up"
                reason = f"the knapsack solver stopped without an answer ({sol.status})"
            break
        choice = {n: cands[k] for n, k in sol.choice.items()}
        entry["objective"] = sol.objective
        if not sol.optimal:  # the deterministic budget ran out: best found and its bound
            entry["bound"] = sol.bound
        entry["lowered"] = {p: sum(1 for v in choice.values() if v == p) for p in cands}
        if progress:
            progress(f"confirming map {rnd + 1}", None)
        run.map_file = map_data(choice, spec.ceiling)
        tc = time.perf_counter()
        if base is not None:
            plan, lowered = _confirm_on(base, target, options, spec.ceiling, run.map_file)
        else:
            plan, lowered = compile_model(model, target, replace(
                options, precision=spec.ceiling, precision_map=run.map_file, band=False,
                what_if=False, what_if_fits=False, passes=options.passes))
        tm["confirm"] = tm.get("confirm", 0.0) + time.perf_counter() - tc
        entry["status"] = plan.status
        if plan.status == STATUS_FITS:
            entry["peak_bytes"] = plan.memory.peak_bytes if plan.memory else None
            verdict, reason = "fits", ""
            break
        d = plan.diagnosis
        entry["evidence"] = d.evidence.kind if d else None
        entry["over_by"] = d.over_by if d else None
        _cut(mm, sol.choice, entry, int(entry["over_by"] or max(1, mm.budget // 64)))
    else:
        verdict = "gave_up"
        reason = (f"{max_rounds} full plans of chosen maps did not fit (placement effects the "
                  "bounds (a)/(b) do not see)")
    tm["rounds"] = time.perf_counter() - t0

    if plan is None:  # nothing confirmed: diagnose the lowest uniform precision instead
        lowest = cands[-1]
        plan = plan_model(infos[lowest], target, options=replace(options, what_if=False),
                          passes=[*names, "quantize"])
        plan.notes.append(f"precision auto: no per-layer map can fit; this diagnosis is the "
                          f"lowest precision, {lowest}, throughout")
    elif options.band and plan.status == STATUS_FITS:
        plan.band = band_of(plan, lowered, options)

    # 6. the result
    k_of = {p: k for k, p in enumerate(cands)}
    chosen = choice or {}
    mixed = inst.error(chosen).to_dict() if chosen else None
    wb_top = sum(mm.weight_bytes[n][0] for n in layer_names)
    wb_map = sum(mm.weight_bytes[n][k_of[chosen[n]]] for n in layer_names) if chosen else None
    res: dict[str, Any] = {
        "spec": spec.text, "ceiling": spec.ceiling, "candidates": cands,
        "verdict": verdict, "reason": reason,
        "sensitivity": {
            "method": method,
            "runs": measured.runs if measured is not None else 0,
            "probe": inst.input_shapes, "key": key[:16],
            "spearman": agreement,
        },
        "layers": len(layer_names),
        "map": chosen,
        "counts": {p: sum(1 for v in chosen.values() if v == p) for p in cands} if chosen
        else {},
        "weight_bytes": {"ceiling": wb_top, "map": wb_map,
                         "saved": (wb_top - wb_map) if wb_map is not None else None},
        "error": {"map": mixed, "uniform": uniform},
        "kept": _kept(chosen, cands, table, mm) if chosen else [],
        "rounds": rounds,
        "activations": ("per layer (the target stores activations at the layer's precision)"
                        if any(int(target.act_bits(p)) < 16 for p in cands[1:]) else
                        "unchanged (the target keeps 16-bit activations)"),
    }
    run.result = res
    run.cached = bool(measured is not None and measured.cached)  # not in the plan: run state
    plan.precision_auto = res
    return plan, lowered, run


def _cut(mm: knapsack.MemoryModel, choice: dict[str, int], entry: dict[str, Any],
         over: int) -> None:
    """After a chosen map's plan did not fit by ``over`` bytes on its fullest tile: the next map
    must do better than this one by that much, as the bounds count it -- per tile in (b), or
    ``over`` on every tile in (a) -- on whichever of the two this map was closer to its limit
    (relative slack: the IPU's chip-wide live set, NorthPole's spread weights per core). A cut,
    so the same map cannot come back; the margin never shrinks."""
    def slack(kind: str) -> int:
        return min(c.limit - c.value(mm, choice) for c in mm.constraints if c.kind == kind)

    s_a, s_b = slack("a"), slack("b")
    if s_a / max(1, mm.capacity) <= s_b / max(1, mm.budget):
        need = over * mm.tiles
        mm.margin_chip = max(mm.margin_chip, s_a + need)
        entry.update(cut="a", need=need)
    else:
        mm.margin_tile = max(mm.margin_tile, s_b + over)
        entry.update(cut="b", need=over)


def _bounds_word(bad: list) -> str | None:
    kinds = sorted({c.kind for c, _ in bad})
    return kinds[0] if kinds else None


def _why_none(mm: knapsack.MemoryModel) -> str:
    """Why no map satisfies the certificates: a constraint even its best map breaks -- an op
    that fits no tile (b) first (the more specific reason), else the chip (a)."""
    worst: dict[str, tuple[knapsack.Constraint, int]] = {}
    for c in mm.constraints:
        over = mm.floor(c) - (c.limit - mm.margin(c))
        if over > 0 and (c.kind not in worst or over > worst[c.kind][1]):
            worst[c.kind] = (c, over)
    if "b" in worst:
        c, over = worst["b"]
        spread = mm.spread_floor()
        own = mm.floor(c) - spread
        what = (f"its own bytes at its finest split ({own:,} B: activations in and out, step "
                f"buffers{', weights' if c.op in mm.layers else ''}) alone exceed a tile"
                if own > c.limit else
                f"its finest split ({own:,} B) plus every tile's share of the spread weights "
                f"({spread:,} B) exceed a tile")
        return (f"(b) op '{c.op}' needs {over:,} B more than one tile holds even with every "
                f"layer at the precision that costs it least: {what} -- no per-layer precision "
                "can fit")
    if "a" in worst:
        c, over = worst["a"]
        return (f"(a) at op '{c.op}': the bytes necessarily live on the chip exceed the whole "
                f"chip by {over:,} B even with every layer at the precision that costs it least "
                "-- no per-layer precision can fit")
    return ("no per-layer map meets (a) and (b) at every op at once, though each alone can be "
            "met")


def _kept(choice: dict[str, str], cands: list[str], table, mm: knapsack.MemoryModel
          ) -> list[dict[str, Any]]:
    """Layers left at the ceiling, the most sensitive first, with what lowering them would cost
    and save."""
    if len(cands) < 2:
        return []
    nxt = cands[1]
    rows = []
    for n, p in choice.items():
        if p != cands[0]:
            continue
        saves = mm.shared["always"][n][0] - mm.shared["always"][n][1]
        saves_tile = mm.shared["spread"][n][0] - mm.shared["spread"][n][1]
        cost = table.cost(n, nxt)
        if saves <= 0 and saves_tile <= 0:
            why = f"{nxt} saves no memory here (costs {-saves:,} B more over the chip)"
        else:
            why = f"{nxt} would add {cost:.3g} to the error sum for {max(saves, 0):,} B saved"
        rows.append({"layer": n, "sensitivity": round(cost, 6), "saves": int(saves),
                     "reason": why})
    # those kept for their sensitivity first (lowering would have saved memory), most sensitive
    # first; then those where lowering saves nothing
    rows.sort(key=lambda r: (r["saves"] <= 0, -r["sensitivity"], r["layer"]))
    return rows[:KEPT_SHOWN]


def save_map(run: AutoRun, path: str | Path, model_label: str, target: Target) -> str:
    """Write the chosen map in the ``--precision-map`` format; returns what was done (no file
    when no map was chosen: the verdict's exit code stands, the line says why)."""
    if run.map_file is None:
        why = run.result.get("reason") or "nothing fits"
        return f"--save-precision-map {path}: not written, no map was chosen ({why})"
    header = [f"written by tilec compile {model_label} --target {target.name} "
              f"--precision {run.spec.text} (sensitivity: {run.method})",
              f"verdict: {run.result.get('verdict')}; read with --precision-map FILE"]
    Path(path).write_text(map_toml(run.map_file, header))
    return f"precision map written to {path} ({run.result.get('verdict')})"


def mixed_note(model: Any, target: Target, options, w: Any, compiled: str,
               base: Any = None) -> None:
    """The OOM what-if's "mixed precision that fits", next to its uniform answer ``w`` (the
    ``min_precision`` question's): when it found a lower uniform precision that fits, the
    per-layer choice between the ``compiled`` precision and that one (the entropy proxy, or the
    measured table when one is cached; at most 2 confirmation plans, no proof of the passes) is
    appended to ``w``'s note -- a mixed map that fits (verified) keeps more layers at the higher
    precision. Nothing is added when no uniform precision fits. (The caller does not ask for a
    model compiled with a map.)

    ``base`` (a callable returning the compile's model lowered without ``quantize`` at the
    compiled precision, or None) spares capturing and lowering the model again at the compiled
    batch -- the compile's own graph serves (:func:`compile_auto`)."""
    from dataclasses import replace

    if w.question != "min_precision" or not w.answer or w.answer == compiled:
        return
    try:
        spec = f"auto:{w.answer}"
        parse_spec(spec, target, compiled)
        opts = replace(options, verify="off", what_if=False, what_if_fits=False, band=False,
                       precision=None, progress=None)
        mixed, _, run = compile_auto(model, target, opts, spec_text=spec, method="cached",
                                     ceiling=compiled, max_rounds=2,
                                     base=base() if base is not None else None)
    except InputError as exc:
        w.note = "; ".join(x for x in (w.note, f"mixed precision not searched ({exc})") if x)
        return
    res = run.result
    if mixed.status == STATUS_FITS and res.get("verdict") == "fits":
        counts = ", ".join(f"{p} x{n}" for p, n in res["counts"].items() if n)
        err = res["error"]["map"]["rel_l2"]
        uni = res["error"]["uniform"][w.answer]["error"]["rel_l2"]
        text = (f"mixed precision that fits: {counts} (verified plan; measured output error "
                f"rel L2 {err:.3g} vs {uni:.3g} for {w.answer} throughout; sensitivity "
                f"{res['sensitivity']['method']}; `--precision auto:{w.answer}` chooses and "
                "writes the map)")
    else:
        text = f"mixed precision: none confirmed ({res.get('reason') or mixed.status})"
    w.note = "; ".join(x for x in (w.note, text) if x)
