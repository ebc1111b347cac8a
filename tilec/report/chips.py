"""The terminal summary of a multi-chip plan (``Plan.chips``): one line per chip.

Like the single-chip summary it prints only what the plan's JSON holds, so ``tilec report`` on a
saved multi-chip plan prints what the compile printed. ``verbose`` adds each chip's own
single-chip summary.
"""

from __future__ import annotations

from rich import box
from rich.table import Table
from rich.text import Text

from tilec.plan.model import STATUS_FITS, Plan
from tilec.report.data import fmt_bytes, fmt_pct, fmt_seconds, model_line, verdict

OPTIMALITY = {
    "exact": "exact",
    "exact_assuming_monotone_fit": "exact (assuming fit is monotone in the stage)",
    "bound": "not proven optimal (bound)",
    "unknown": "unknown",
}


def render_chips(plan: Plan, verbose: bool = False) -> list:
    """The multi-chip summary as rich renderables."""
    cs = plan.chips
    assert cs is not None
    sysd = cs.system
    out: list = []
    head = Text()
    head.append("tilec", style="bold")
    line = model_line(plan).replace(f" on {plan.target.name}",
                                    f" on {sysd['name']} ({sysd['chips']} x {sysd['chip']})", 1)
    head.append(f" · {line} · {cs.mode}")
    out.append(head)
    label, style = verdict(plan)
    v = Text()
    v.append(f" {label} ", style=f"bold reverse {style}")
    if plan.status == STATUS_FITS:
        checks = plan.verification.checks if plan.verification else []
        v.append(f"  on {cs.chips} of {sysd['chips']} chips · every chip's plan verified "
                 f"({len(checks)} plans) · cut {OPTIMALITY.get(cs.optimality, cs.optimality)}")
    else:
        v.append(f"  {cs.note}")
    out.append(v)
    if cs.stages:
        out.append(_chip_table(plan))
    out.append(_facts(plan))
    for note in plan.notes:
        out.append(Text(f"note: {note}", style="dim"))
    if verbose:
        from tilec.report.terminal import render

        for st in cs.stages:
            if st.plan is None:
                continue
            out.append(Text(f"\nchip {st.chip}: its own plan", style="bold"))
            out.extend(render(Plan.from_dict(st.plan), verbose=False))
    return out


def _chip_table(plan: Plan) -> Table:
    cs = plan.chips
    assert cs is not None
    budget = plan.target.budget_per_tile
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name, justify in (("chip", "right"), ("stage ops", "left"), ("ops", "right"),
                          ("batch", "right"), ("peak", "right"), ("of budget", "right"),
                          ("headroom", "right"), ("stage time", "right"), ("link in", "right"),
                          ("link out", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    for st in cs.stages:
        where = f"[{st.start}, {st.end})" if cs.mode != "replicate" else "whole model"
        if st.same_as is not None:
            where += f" (as chip {st.same_as})"
        table.add_row(str(st.chip), where, str(st.ops), str(st.batch), fmt_bytes(st.peak_bytes),
                      fmt_pct(st.peak_bytes or 0, budget) if st.peak_bytes is not None else "-",
                      fmt_bytes(st.headroom_bytes), fmt_seconds(st.stage_seconds),
                      fmt_bytes(st.recv_bytes), fmt_bytes(st.send_bytes))
    return table


def _facts(plan: Plan) -> Table:
    cs = plan.chips
    assert cs is not None
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    sysd = cs.system
    if cs.interval_seconds is not None:
        rate = f"{cs.throughput_per_s:,.1f} images/s" if cs.throughput_per_s else "-"
        if cs.micro_batches > 1:
            grid.add_row("batch", f"{cs.micro_batches} micro-batches of {cs.micro_batch} "
                                  "through the stages")
        if cs.mode == "pipeline":
            slowest = max((st.stage_seconds or 0.0) for st in cs.stages) if cs.stages else 0.0
            grid.add_row("timing", f"one batch every {fmt_seconds(cs.interval_seconds)} (the "
                                   f"slowest stage, {fmt_seconds(slowest)}, per micro-batch) · "
                                   f"latency {fmt_seconds(cs.latency_seconds)} (stages + "
                                   f"transfers) · {rate}"
                         if cs.micro_batches > 1 else
                         f"one batch every {fmt_seconds(cs.interval_seconds)} (the "
                         f"slowest stage) · latency {fmt_seconds(cs.latency_seconds)} "
                         f"(stages + transfers) · {rate}")
        elif cs.mode == "sharded":
            grid.add_row("timing", f"latency {fmt_seconds(cs.latency_seconds)} (stages one after "
                                   f"the other, transfers included) · {rate}")
        else:
            grid.add_row("timing", f"latency {fmt_seconds(cs.latency_seconds)} (chips in "
                                   f"parallel) · {rate}")
    grid.add_row("links", f"{sysd['link_bytes_per_s'] / 1e9:g} GB/s, "
                          f"{fmt_seconds(sysd['link_latency_s'])} per transfer "
                          + (f"({sysd['name']}: {sysd['description']})"
                             if sysd.get("description") else f"({sysd['name']})"))
    cut = f"{cs.note}"
    if cs.mode != "replicate":
        cut += f" · {cs.plans_made} stage plans, {cs.bounds_checked} stages checked by bounds"
    grid.add_row("search", cut)
    tried = "; ".join(f"{t['chips']} chip{'s' if t['chips'] > 1 else ''}"
                      + (f" (micro-batch {t['micro_batch']})" if "micro_batch" in t
                         and t["micro_batch"] != plan.model.batch else "")
                      + f": {t['status'].replace('_', ' ')}" for t in cs.tried)
    if tried:
        grid.add_row("tried", tried)
    return grid
