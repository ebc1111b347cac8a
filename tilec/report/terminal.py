"""The terminal summary of a Plan: what a user reads in ten seconds after ``tilec compile``.

It prints only what the Plan's JSON holds (no wall-clock timings), so ``tilec report plan.json``
prints exactly what the compile that saved the plan printed. Layout, top to bottom: the model
line; the verdict (FITS / DOES NOT FIT / UNKNOWN with the evidence letter); the peak tile with its
headroom, the latency and throughput, the model's size; bytes by category at the peak; the fullest
tiles; for a plan that fits searched with ``--what-if``, the headroom table (how far batch,
image size and precision can grow, how little SRAM per tile it needs); for a diagnosis, a panel
with the evidence, the worst tile, what is live there and the what-if answers; the plan's notes.
``verbose`` adds the per-op table.

Everything goes through a rich Console, so the output is plain, aligned text when it is not a
terminal (pipes, tests) and coloured when it is.
"""

from __future__ import annotations

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tilec.plan.model import STATUS_DOES_NOT_FIT, STATUS_FITS, STATUS_UNKNOWN, Plan, tiles_in
from tilec.report.data import (
    BAND_TITLE,
    EVIDENCE_TITLES,
    HEADROOM_TITLE,
    WHAT_IF_TITLES,
    band_lines,
    band_setting_row,
    band_tag,
    category_order,
    fmt_answer,
    fmt_bytes,
    fmt_count,
    fmt_pct,
    fmt_seconds,
    fmt_split,
    fmt_tiles,
    io_labels,
    model_line,
    op_at_step,
    op_tile_bytes,
    placed_memory,
    spot,
    tile_coords,
    top_tile_groups,
    verdict,
)

TOP_TILES = 5
LIVE_SHOWN = 6


def print_plan(plan: Plan, console: Console, verbose: bool = False) -> None:
    """Print the summary of ``plan`` (and, with ``verbose``, its per-op table) to ``console``.

    Not on a terminal (a pipe, a file, a test) the lines lose the blanks rich pads table cells
    with, so a saved summary diffs and greps cleanly.
    """
    renderables = render(plan, verbose=verbose)
    if console.is_terminal:
        for renderable in renderables:
            console.print(renderable)
        return
    with console.capture() as captured:
        for renderable in renderables:
            console.print(renderable)
    console.file.write("\n".join(line.rstrip() for line in captured.get().split("\n")))


def render(plan: Plan, verbose: bool = False) -> list:
    """The summary as a list of rich renderables (what :func:`print_plan` prints)."""
    if plan.chips is not None:  # a compile over several chips: one line per chip
        from tilec.report.chips import render_chips

        return render_chips(plan, verbose=verbose)
    out: list = []
    label, style = verdict(plan)
    head = Text()
    head.append("tilec", style="bold")
    head.append(f" · {model_line(plan)}")
    out.append(head)
    line = Text()
    line.append(f" {label} ", style=f"bold reverse {style}")
    line.append("  " + _verdict_detail(plan))
    tag = band_tag(plan)
    if tag:
        line.append(" · ")
        line.append(tag, style="bold yellow" if plan.band and plan.band.status == "borderline"
                    else None)
    out.append(line)
    out.append(_facts(plan))
    if plan.band is not None:
        out.append(_band(plan, verbose))
    mem = placed_memory(plan)
    if mem is not None and mem.by_category_at_peak:
        out.append(_categories(plan))
    if mem is not None:
        out.append(_top_tiles(plan))
    if plan.what_if:
        out.append(_headroom(plan))
    if plan.diagnosis is not None:
        out.append(_diagnosis(plan))
    if plan.precision_auto:
        from tilec.report.precision_auto import render as render_auto

        out.append(render_auto(plan.precision_auto))
    for note in plan.notes:
        out.append(Text(f"note: {note}", style="dim"))
    if verbose:
        out.append(_op_table(plan))
    return out


# ----------------------------------------------------------------------------------- pieces
def _verdict_detail(plan: Plan) -> str:
    if plan.status == STATUS_FITS:
        v = plan.verification
        if v is not None and v.ok:
            return f"verified placement ({len(v.checks)} independent checks passed)"
        return "placement NOT verified"
    if plan.diagnosis is not None:
        return EVIDENCE_TITLES.get(plan.diagnosis.evidence.kind, plan.diagnosis.evidence.kind)
    return "no diagnosis recorded"


def _where(plan: Plan, tile: int | None, step: int | None) -> str:
    """``tile 517 (row 11, col 11) at step 41 (conv_37)``; coordinates on a mesh target only."""
    parts = []
    if tile is not None:
        text = f"tile {tile}"
        if plan.target.placement == "rect":
            r, c = tile_coords(tile, plan.target.grid)
            text += f" (row {r}, col {c})"
        parts.append(text)
    if step is not None:
        text = f"at step {step}"
        op = op_at_step(plan, step, tile)
        if op:
            text += f" ({op})"
        parts.append(text)
    return " ".join(parts)


def _facts(plan: Plan) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    budget = plan.target.budget_per_tile
    mem = placed_memory(plan)
    if mem is not None:
        headroom = budget - mem.peak_bytes
        word = "headroom" if headroom >= 0 else "over by"
        # no second percentage: the headroom's share is 100 % less the peak's
        grid.add_row(
            "peak",
            f"{_where(plan, mem.peak_tile, mem.peak_step)}: {fmt_bytes(mem.peak_bytes)} of "
            f"{fmt_bytes(budget)} ({fmt_pct(mem.peak_bytes, budget)}) · {word} "
            f"{fmt_bytes(abs(headroom))}")
    grid.add_row("budget", f"{fmt_bytes(budget)} per tile ({plan.target.bytes_per_tile:,} B less "
                           f"{plan.target.reserved_bytes_per_tile:,} B reserved) × "
                           f"{plan.target.tiles} tiles")
    lat = plan.latency
    if lat is not None and plan.status != STATUS_DOES_NOT_FIT:
        estimate = "estimated" if plan.status == STATUS_FITS else "of the best partial placement"
        into, out_of = io_labels(plan)
        grid.add_row("latency", f"{fmt_seconds(lat.seconds)} per batch of {plan.model.batch} "
                                f"({estimate}: {into} {fmt_seconds(lat.input_seconds)} + "
                                f"device {fmt_seconds(lat.device_seconds)} + {out_of} "
                                f"{fmt_seconds(lat.output_seconds)}) · "
                                f"{_rate(lat.throughput_per_s)} "
                                f"{'images' if plan.model.image_size else 'inferences'}/s")
    m = plan.model
    size = (f"{m.ops} ops · {fmt_count(m.params)} params · {fmt_count(m.macs, 'MAC')} · "
            f"weights {fmt_bytes(m.weight_bytes)}")
    if plan.steps:
        size += f" · {len(plan.steps)} supersteps"
    if mem is not None:
        used = sum(1 for p in mem.per_tile_peak if p > 0)
        size += f" on {used}/{plan.target.tiles} tiles"
    grid.add_row("model", size)
    if m.host:  # what capture cut off to the host (tilec/capture/host.py)
        kinds = ", ".join(f"{op} ×{n}" for op, n in m.host["op_types"].items())
        parts = [f"{n} ops at the {w}" for n, w in ((m.host["head_ops"], "head"),
                                                     (m.host["tail_ops"], "tail")) if n]
        grid.add_row("host", f"{' and '.join(parts)} run on the host ({kinds}); cut at "
                             f"{len(m.host['to_device'])} tensor(s) in, "
                             f"{len(m.host['to_host'])} out, transfer in the latency")
    s = plan.solver
    if s is not None:
        text = s.status
        if s.gap is not None:
            text += f", gap {100 * s.gap:.1f} %"
        if s.time_limit is not None:
            text += f", limit {s.time_limit:g} s"
        grid.add_row("solver", text)
    return grid


def _categories(plan: Plan) -> Group:
    mem = placed_memory(plan)
    assert mem is not None
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("category")
    table.add_column("bytes", justify="right")
    table.add_column("", justify="right")
    table.add_column("share", justify="right")
    total = sum(mem.by_category_at_peak.values())
    for cat in category_order(mem.by_category_at_peak):
        b = mem.by_category_at_peak.get(cat, 0)
        if b:
            table.add_row(cat, f"{b:,}", fmt_bytes(b), fmt_pct(b, total))
    table.add_row("total", f"{total:,}", fmt_bytes(total), "", style="bold")
    heading = Text(f"bytes at the peak, {_where(plan, mem.peak_tile, mem.peak_step)}",
                   style="bold")
    return Group(Text(""), heading, table)


def _top_tiles(plan: Plan) -> Group:
    budget = plan.target.budget_per_tile
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("tiles", justify="right")
    table.add_column("peak", justify="right")
    table.add_column("of budget", justify="right")
    table.add_column("headroom", justify="right")
    for start, stop, peak in top_tile_groups(plan, TOP_TILES):
        if stop - start > 1:
            label = f"{fmt_tiles(plan, [[start, stop]])} ({stop - start})"
        elif plan.target.placement == "rect":
            r, c = tile_coords(start, plan.target.grid)
            label = f"{start} (row {r}, col {c})"
        else:
            label = str(start)
        table.add_row(label, fmt_bytes(peak), fmt_pct(peak, budget), fmt_bytes(budget - peak),
                      style="red" if peak > budget else None)
    return Group(Text(""), Text("fullest tiles", style="bold"), table)


def _band(plan: Plan, verbose: bool) -> Group:
    """The verdict over the target's constant ranges: robust, or where it flips."""
    b = plan.band
    assert b is not None
    style = "yellow" if b.status == "borderline" else None
    rows: list = [Text(""), Text(BAND_TITLE, style="bold")]
    rows.extend(Text("  " + line, style=style if i == 0 or line.startswith("flips") else None)
                for i, line in enumerate(band_lines(plan)))
    if verbose and b.settings:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for col in ("setting", "constants moved", "result", "decided by"):
            table.add_column(col, overflow="fold")
        for s in b.settings:
            table.add_row(*band_setting_row(s))
        rows.append(table)
    return Group(*rows)


def _rate(per_s: float) -> str:
    return f"{per_s:,.0f}" if per_s >= 100 else f"{per_s:.3g}"


def _diagnosis(plan: Plan) -> Group:
    d = plan.diagnosis
    assert d is not None
    ev = d.evidence
    rows: list = []
    letter = f"({ev.letter}) " if ev.kind in EVIDENCE_TITLES else ""
    checked = " · re-checked independently" if ev.rechecked else ""
    rows.append(Text(f"evidence {letter}{ev.kind.replace('_', ' ')}{checked}", style="bold"))
    rows.append(Text(ev.summary))
    budget = plan.target.budget_per_tile
    if d.bytes_needed is not None or d.worst_tile is not None or d.worst_op is not None:
        where = _where(plan, d.worst_tile, d.worst_step)
        if d.worst_op and (d.worst_step is None or d.worst_op not in where):
            where = (where + f", op {d.worst_op}").lstrip(", ")
        text = f"worst: {where}" if where else "worst"
        if d.bytes_needed is not None:
            text += f": needs {fmt_bytes(d.bytes_needed)} ({d.bytes_needed:,} B)"
        if d.over_by is not None:
            text += f", {fmt_bytes(d.over_by)} over the {fmt_bytes(budget)} budget"
        rows.append(Text(text))
    mem = placed_memory(plan)
    same_peak = mem is not None and (mem.peak_tile, mem.peak_step) == (d.worst_tile, d.worst_step)
    if d.by_category and not (same_peak and d.by_category == mem.by_category_at_peak):
        total = sum(d.by_category.values())
        parts = [f"{c} {fmt_bytes(d.by_category[c])} ({fmt_pct(d.by_category[c], total)})"
                 for c in category_order(d.by_category) if d.by_category.get(c)]
        rows.append(Text("by category: " + " · ".join(parts)))
    rows.extend(_what_is_there(plan))
    if d.top_tiles and not (mem is not None and mem.per_tile_peak):  # else the table shows them
        parts = []
        for t in d.top_tiles[:TOP_TILES]:
            if set(t) == {"tile", "bytes"}:
                parts.append(f"{t['tile']} ({fmt_bytes(t['bytes'])})")
            else:
                parts.append(", ".join(f"{k} {v}" for k, v in sorted(t.items())))
        more = f" (+{len(d.top_tiles) - TOP_TILES} more)" if len(d.top_tiles) > TOP_TILES else ""
        rows.append(Text("fullest tiles: " + "; ".join(parts) + more))
    if d.what_if:
        rows.append(_what_if_table(d.what_if, "what would fit"))
    title = {STATUS_DOES_NOT_FIT: "why it does not fit",
             STATUS_UNKNOWN: "why no placement was found"}.get(plan.status, "diagnosis")
    style = "red" if plan.status == STATUS_DOES_NOT_FIT else "yellow"
    panel = Panel(Group(*rows), title=title, title_align="left", border_style=style,
                  box=box.ROUNDED)
    return Group(Text(""), panel)


def _what_if_table(answers: list, title: str | None = None,
                   none: str = "none in the searched range") -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, title=title,
                  title_justify="left")
    table.add_column("question")
    table.add_column("answer")
    table.add_column("status")
    table.add_column("note")
    for w in answers:
        table.add_row(WHAT_IF_TITLES.get(w.question, w.question),
                      fmt_answer(w.question, w.answer, none, w.status), w.status, w.note)
    return table


def _headroom(plan: Plan) -> Group:
    """A fitting plan's what-if answers (``--what-if``): how far it can grow."""
    heading = Text(f"{HEADROOM_TITLE} (at batch {plan.model.batch}"
                   + (f", {plan.model.image_size[0]}×{plan.model.image_size[1]}"
                      if plan.model.image_size else "")
                   + f", {plan.model.precision}; one knob at a time)", style="bold")
    return Group(Text(""), heading, _what_if_table(plan.what_if, none="not searched"))


def _listed(items: list[tuple[str, int]], limit: int = LIVE_SHOWN) -> str:
    """``a 1.2 KiB, b 800 B (+3 more)``."""
    text = ", ".join(f"{name} {fmt_bytes(b)}" for name, b in items[:limit])
    return text + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _what_is_there(plan: Plan) -> list[Text]:
    """What fills the worst tile at the worst step, in three groups that add up to its bytes.

    A flat "live ops (214): ..." list read as if 214 ops were running at once; in fact one op
    runs and the rest only keep their weights, code and state on every tile for the whole run.
    So: the ops running there, the activation tensors held there, and the always-live bytes of
    the others as one sum with its largest owners.
    """
    d = plan.diagnosis
    assert d is not None
    here = spot(plan, d.worst_tile, d.worst_step)
    if here is None:  # no placement to look into: the diagnosis's own lists, if any
        rows = []
        if d.live_ops:
            rows.append(Text(f"ops holding bytes there ({len(d.live_ops)}): "
                             + _listed([(n, 0) for n in d.live_ops]).replace(" 0 B", "")))
        if d.live_tensors:
            tensors = sorted(((str(t.get("name", "?")), int(t.get("bytes") or 0))
                              for t in d.live_tensors), key=lambda kv: (-kv[1], kv[0]))
            rows.append(Text(f"tensors held there ({len(tensors)}, largest first): "
                             + _listed(tensors)))
        return rows
    rows = []
    if here.running:
        rows.append(Text(f"running there: {_listed(here.running)}"))
    if here.tensors:
        rows.append(Text(f"tensors held there ({len(here.tensors)}, largest first): "
                         + _listed(here.tensors)))
    if here.resident:
        rows.append(Text(f"always-live there: {fmt_bytes(here.resident_bytes)} from "
                         f"{len(here.resident)} other ops (weights, code, state kept for the "
                         f"whole run); largest: {_listed(here.resident, 3)}"))
    return rows


def _op_table(plan: Plan) -> Group:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name, justify in (("step", "right"), ("op", "left"), ("type", "left"),
                          ("tiles", "right"), ("where", "left"), ("split", "left"),
                          ("bytes/tile", "right"), ("MACs", "right"), ("cycles", "right")):
        table.add_column(name, justify=justify,  # type: ignore[arg-type]
                         no_wrap=name not in ("op", "where"), overflow="fold",
                         min_width=min(40, max((len(o.name) for o in plan.ops), default=2))
                         if name == "op" else None)
    for op in sorted(plan.ops, key=lambda o: (o.step, o.name)):
        table.add_row(str(op.step), op.name, op.op_type, str(tiles_in(op.tiles)),
                      fmt_tiles(plan, op.tiles, limit=2), fmt_split(op.split),
                      fmt_bytes(op_tile_bytes(op)), fmt_count(op.macs),
                      f"{op.compute_cycles + op.exchange_cycles:,}")
    if not plan.ops:
        table.add_row("-", "no ops were placed", "", "", "", "", "", "", "")
    return Group(Text(""), Text(f"ops ({len(plan.ops)}) by superstep", style="bold"), table)
