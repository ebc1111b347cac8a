"""``tilec ops``: the ONNX op types tilec plans, by cost kind, and those it only folds.

    tilec ops                   # every op type, grouped by the cost kind the targets price it as
    tilec ops --target gc200    # the same for one target (both families price every kind)
    tilec ops --json            # machine-readable

The error for a model with unsupported ops names only those (with counts and first nodes) and
points here, instead of printing this whole list in every message.
"""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from tilec.commands.common import console

DEVICE_POSTPROCESSING = ("topk", "nms")
"""Cost kinds of post-processing that stays on the host unless annotated (capture/support.py)."""


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "ops", parents=[parent], help="list the op types tilec plans",
        description="Every ONNX op type tilec plans, grouped by the cost kind the target's cost "
                    "model prices it as, and the ops it accepts only as constant arithmetic "
                    "(folded away at capture).",
    )
    p.add_argument("--target", "-t", default=None,
                   help="a target name or TOML path: list what that target plans")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def op_table(target: str | None = None) -> dict:
    """{"target", "cost_model", "kinds": {kind: [op types]}, "constant_only": [...]}."""
    from tilec.opinfo import CONSTANT_ONLY_OPS, OP_KINDS

    family = None
    if target is not None:
        from tilec.targets import load_target

        loaded = load_target(target)  # an unknown target is an input error (exit 2)
        target, family = loaded.name, loaded.family
    kinds: dict[str, list[str]] = {}
    for op, kind in OP_KINDS.items():
        if family == "northpole" and kind in DEVICE_POSTPROCESSING:
            continue  # no data-dependent control flow on NorthPole: these stay on the host
        kinds.setdefault(kind, []).append(op)
    return {"target": target, "cost_model": family,
            "kinds": {k: sorted(v) for k, v in kinds.items()},
            "constant_only": sorted(CONSTANT_ONLY_OPS)}


def run(args: argparse.Namespace) -> int:
    data = op_table(args.target)
    out = console(args)
    if args.json:
        out.print_json(json.dumps(data, sort_keys=True))
        return 0
    total = sum(len(v) for v in data["kinds"].values())
    who = (f"{data['target']} ({data['cost_model']} cost model) plans"
           if data["target"] else "tilec plans")
    table = Table(title=f"{who} {total} op types", title_justify="left", show_edge=False)
    table.add_column("cost kind")
    table.add_column("op types")
    for kind, ops in data["kinds"].items():
        note = ("  (on the chip where a node is annotated tilec.on_device, else on the host)"
                if kind in DEVICE_POSTPROCESSING else "")
        table.add_row(kind, " ".join(ops) + note)
    table.add_row("constant only", " ".join(data["constant_only"]) + "  (folded when they "
                  "read only constants)")
    out.print(table)
    return 0
