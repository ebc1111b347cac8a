"""``tilec passes [NAME]``: the lowering passes, one line each (or one pass's full description)."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from tilec.commands.common import console
from tilec.errors import InputError


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("passes", parents=[parent], help="list the lowering passes",
                       description="List the lowering passes with one line each and the default "
                                   "pipeline of every built-in target; `tilec passes NAME` prints "
                                   "a pass's rewrite, its math and what it leaves alone.")
    p.add_argument("name", nargs="?", metavar="NAME", help="show this pass in full")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=run)


def _pipelines() -> dict[str, dict[str, list[str]]]:
    """Default pipelines of the built-in targets, by target and precision."""
    from tilec.targets import load_target, names

    out: dict[str, dict[str, list[str]]] = {}
    for tname in names():
        target = load_target(tname)
        out[tname] = {p: target.default_passes(p) for p in target.precisions}
    return out


def run(args: argparse.Namespace) -> int:
    from tilec.passes import REGISTRY, get

    con = console(args)
    if args.name:
        p = get(args.name) if args.name in REGISTRY else None
        if p is None:
            raise InputError(f"passes: unknown pass '{args.name}' (passes: "
                             f"{', '.join(REGISTRY)})")
        if args.json:
            print(json.dumps({"name": p.name, "summary": p.summary, "exact": p.exact,
                              "doc": p.doc}, indent=2))
        else:
            con.print(f"{p.name} ({'exact' if p.exact else 'lossy: error measured'})",
                      highlight=False)
            con.print(p.doc, markup=False, highlight=False)
        return 0
    pipelines = _pipelines()
    if args.json:
        print(json.dumps({"passes": [{"name": p.name, "summary": p.summary, "exact": p.exact}
                                     for p in REGISTRY.values()],
                          "pipelines": pipelines}, indent=2, sort_keys=True))
        return 0
    table = Table(title="lowering passes (in pipeline order)")
    table.add_column("pass")
    table.add_column("proof")
    table.add_column("what it does")
    for p in REGISTRY.values():
        table.add_row(p.name, "exact" if p.exact else "error measured", p.summary)
    con.print(table)
    con.print("Default pipelines (`tilec passes NAME` for a pass's math; `--passes a,b,c` "
              "overrides):")
    for tname, by_prec in pipelines.items():
        seen: dict[tuple[str, ...], list[str]] = {}
        for prec, names in by_prec.items():
            seen.setdefault(tuple(names), []).append(prec)
        for names, precs in seen.items():
            con.print(f"  {tname} [{'/'.join(precs)}]: {', '.join(names)}", highlight=False,
                      markup=False)
    return 0
