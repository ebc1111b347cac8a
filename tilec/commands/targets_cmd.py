"""``tilec targets``: the chips tilec knows, and every constant of one with its source.

    tilec targets                       # table of the built-in targets
    tilec targets show gc200            # every field of one target, with the source of each value
    tilec targets show ./my-chip.toml   # validate a custom target and show it (exit 2 if invalid)

Custom targets are TOML files in the same format (``[target] base = "gc200"`` starts from a built-in
one); any command takes them with ``--target ./my-chip.toml``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table
from rich.text import Text

from tilec.commands.common import console
from tilec.errors import InputError


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "targets", parents=[parent], help="list the target chips, or show one target's fields",
        description="Without arguments: a table of the built-in targets. `show NAME|PATH`: every "
                    "field of a built-in target or of a target TOML file, with the source each "
                    "value cites. A TOML file with a bad field is reported in one line (exit 2).",
    )
    p.add_argument("action", nargs="?", default="list", metavar="show",
                   help="'show' to print one target (default: list all)")
    p.add_argument("target", nargs="?", metavar="NAME|PATH",
                   help="built-in target name or path to a target .toml file")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=run)


def _fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{int(n)} B"


def _fmt_hz(hz: float) -> str:
    return f"{hz / 1e9:.2f} GHz" if hz >= 1e9 else f"{hz / 1e6:.0f} MHz"


def _fmt_value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_fmt_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if abs(value) >= 1e6 and value == int(value):  # 1.33e9, as the TOML writes it
            mantissa, exp = f"{value:.6e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
        return f"{value:g}"
    return str(value)


def run(args: argparse.Namespace) -> int:
    from tilec.targets import is_target_path, load_target, names

    action, name = args.action, args.target
    if action not in ("list", "show"):
        if name is not None:
            raise InputError(f"tilec targets: unknown action '{action}' "
                             f"(use `tilec targets` or `tilec targets show NAME|PATH`)")
        if action in names() or is_target_path(action):  # `tilec targets gc200` shows it
            action, name = "show", action
        else:
            raise InputError(f"tilec targets: unknown action or target '{action}' "
                             f"(targets: {', '.join(names())}; or `tilec targets show PATH`)")
    if action == "list":
        if name is not None:
            raise InputError("tilec targets: to see one target use `tilec targets show NAME`")
        return _list([load_target(n) for n in names()], args)
    if name is None:
        raise InputError("tilec targets show: give a target name "
                         f"({', '.join(names())}) or the path of a target .toml file")
    return _show(load_target(name), args)


def _list(targets: list, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([t.summary() for t in targets], indent=1, sort_keys=True))
        return 0
    table = Table(title="tilec targets", show_edge=False, header_style="bold")
    for col, just in (("name", "left"), ("tiles", "right"), ("grid", "right"),
                      ("bytes/tile", "right"), ("total SRAM", "right"), ("clock", "right"),
                      ("peak MAC/s", "right"), ("precisions", "left"), ("placement", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for t in targets:
        dp = t.default_precision
        table.add_row(
            t.name, f"{t.tiles:,}", f"{t.grid[0]}x{t.grid[1]}", _fmt_bytes(t.bytes_per_tile),
            _fmt_bytes(t.total_bytes), _fmt_hz(t.clock_hz),
            f"{t.peak_macs_per_s(dp) / 1e12:.1f} T ({dp})",
            ", ".join(p + ("*" if p == dp else "") for p in t.precisions), t.placement,
        )
    out = console(args)
    out.print(table)
    out.print("* default precision. `tilec targets show NAME` prints every field with its source; "
              "`--target ./my-chip.toml` uses a custom target.")
    from tilec.targets.system import load_system, system_names

    systems = [load_system(n) for n in system_names()]
    out.print("chip systems (`tilec compile --target NAME --chips N|auto`): " + "; ".join(
        f"{s.name} ({s.chips} x {s.chip.name}, links {s.link_bytes_per_s / 1e9:g} GB/s)"
        for s in systems))
    return 0


def _show(t, args: argparse.Namespace) -> int:
    rows = t.rows()
    inherited = len(t.chain) > 1
    if args.json:
        data = {
            "summary": t.summary(), "chain": list(t.chain),
            "fields": [{"section": s, "key": k, "value": v, "source": src, "file": f}
                       for s, k, v, src, f in rows],
        }
        print(json.dumps(data, indent=1, sort_keys=True))
        return 0
    out = console(args)
    out.print(f"[bold]{t.name}[/] -- {t.description}")
    out.print(f"  file: {' <- '.join(t.chain)}   cost model: {t.family}   placement: "
              f"{t.placement}")
    out.print(f"  {t.tiles:,} tiles ({t.grid[0]}x{t.grid[1]}) x {t.bytes_per_tile:,} B "
              f"({_fmt_bytes(t.bytes_per_tile)}) = {_fmt_bytes(t.total_bytes)}; "
              f"{t.reserved_bytes_per_tile:,} B reserved per tile, budget "
              f"{t.budget_per_tile:,} B; {_fmt_hz(t.clock_hz)}; peak "
              f"{t.peak_macs_per_s() / 1e12:.1f} TMAC/s at {t.default_precision}")
    if t.io_location == "framebuffer":
        out.print(f"  model inputs/outputs live in the {_fmt_bytes(t.framebuffer_bytes)} "
                  f"framebuffer, not in tile memory")
    if t.default_precision_note:
        out.print(f"  default precision: {t.default_precision_note}")
    table = Table(show_edge=False, header_style="bold", expand=False)
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold", max_width=32)
    if inherited:
        table.add_column("file", no_wrap=True)
    table.add_column("source", overflow="fold")
    section = None
    last_source = ""
    for sec, key, value, source, origin in rows:
        if sec != section:
            if section is not None:
                table.add_section()
            section, last_source = sec, ""
            table.add_row(Text(f"[{sec}]", style="bold"))
        shown = "(as above)" if source and source == last_source else source
        last_source = source
        cells = [key, _fmt_value(value)] + ([origin] if inherited else []) + [shown]
        table.add_row(*(Text(c) for c in cells))  # Text: "[...]" in values is not markup
    out.print(table)
    return 0
