"""``tilec zoo``: the built-in models -- list them, show one, export one to ONNX, manage the cache.

Sizes in ``list`` / ``show`` come from meta-tensor propagation (:mod:`tilec.zoo.stats`): no weights
are allocated and nothing is exported, so listing all sixteen models takes seconds, not minutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from rich.table import Table

from tilec.commands.common import console, output_file, positive_int
from tilec.errors import InputError


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "zoo", parents=[parent], help="built-in models: list, show, export to ONNX",
        description="The built-in models (PyTorch definitions with fixed-seed weights). Any "
                    "command that takes a model file also takes one of these names.")
    actions = p.add_subparsers(dest="zoo_action", metavar="ACTION")
    lst = actions.add_parser("list", parents=[parent], help="every model with its size and MACs")
    lst.add_argument("--json", type=output_file, metavar="FILE",
                     help="also write the table as JSON")
    show = actions.add_parser("show", parents=[parent], help="facts about one model")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--image-size", "-s", default=None, metavar="S|HxW",
                      help="input size for the MAC count and output shapes (default: the "
                           "model's own)")
    exp = actions.add_parser("export", parents=[parent], help="write a model as an ONNX file",
                             description="Export NAME to ONNX (BatchNorm kept as its own node, "
                                         "weights fixed-seed). Exports are cached; this copies "
                                         "the cached file.")
    exp.add_argument("name", metavar="NAME")
    exp.add_argument("--output", "-o", type=output_file, required=True, metavar="FILE.onnx",
                     help="where to write the model")
    exp.add_argument("--image-size", "-s", default=None, metavar="S|HxW",
                     help="input size (default: the model's own)")
    exp.add_argument("--batch", "-b", type=positive_int, default=1, help="batch size (default 1)")
    exp.add_argument("--opset", type=int, default=None,
                     help="ONNX opset (default 18, the first with a Mish operator)")
    exp.add_argument("--mish", choices=("op", "decomposed"), default="op",
                     help="Mish as the ONNX Mish op, or decomposed as x*tanh(softplus(x)) the way "
                          "many deployed YOLOv4 files carry it (default: op)")
    exp.add_argument("--refresh", action="store_true", help="export again even if cached")
    cache = actions.add_parser("cache", parents=[parent], help="where exports are cached")
    cache.add_argument("--clear", action="store_true", help="delete every cached export")
    for q in (p, lst, show, exp, cache):
        q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "zoo_action", None) or "list"
    return {"list": _list, "show": _show, "export": _export, "cache": _cache}[action](args)


def _fmt_count(n: int, unit: str = "") -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} G{unit}"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M{unit}"
    return f"{n:,}"


def _list(args: argparse.Namespace) -> int:
    from tilec import zoo
    from tilec.zoo.stats import default_stats

    rows = []
    all_stats = default_stats(zoo.names())
    for name in zoo.names():
        spec = zoo.spec(name)
        stats = all_stats[name]
        rows.append({
            "name": name, "image_size": spec.default_image_size, "stride": spec.stride,
            "params": stats.params, "macs": stats.macs, "description": spec.description,
        })
    out = console(args)
    table = Table(title="tilec zoo (parameters as built; MACs of conv + linear layers, batch 1)",
                  show_edge=False)
    for col, justify in (("name", "left"), ("input", "right"), ("parameters", "right"),
                         ("MACs", "right"), ("description", "left")):
        table.add_column(col, justify=justify)
    for r in rows:
        table.add_row(r["name"], f"{r['image_size']}", _fmt_count(r["params"]),
                      _fmt_count(r["macs"]), r["description"])
    out.print(table)
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    return 0


def _show(args: argparse.Namespace) -> int:
    from tilec import zoo

    spec = zoo.spec(args.name)
    stats = zoo.model_stats(args.name, args.image_size)
    out = console(args)
    h, w = stats.image_size
    out.print(f"[bold]{spec.name}[/] -- {spec.description}")
    out.print(f"  family:      {spec.family}")
    out.print(f"  source:      {spec.source}")
    out.print(f"  input:       1x{spec.channels}x{h}x{w} (default {spec.default_image_size}; "
              f"sizes must be multiples of the stride {spec.stride})")
    out.print(f"  parameters:  {stats.params:,}")
    out.print(f"  convolutions: {stats.convs}   MACs at {h}x{w}: {stats.macs:,} "
              f"({stats.macs / 1e9:.2f} G; conv {stats.conv_macs / 1e9:.2f} G)")
    outs = ", ".join("x".join(map(str, s)) for s in stats.outputs)
    out.print(f"  outputs:     {outs}")
    if spec.published:
        out.print("  published:   " + "; ".join(f"{k} {v}" for k, v in spec.published.items()))
    out.print(f"  seed:        {spec.seed}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from tilec import zoo

    target = Path(args.output)
    if target.exists() and target.is_dir():
        raise InputError(f"{target}: is a directory; give a file name for the ONNX model")
    if not target.parent.exists():
        raise InputError(f"{target.parent}: no such directory")
    cached = zoo.export(args.name, image_size=args.image_size, batch=args.batch,
                        opset=args.opset, mish=args.mish, refresh=args.refresh)
    shutil.copyfile(cached, target)
    if not args.quiet:
        out = console(args)
        out.print(f"wrote {target} ({target.stat().st_size / 2**20:.1f} MiB; cached at {cached})")
    return 0


def _cache(args: argparse.Namespace) -> int:
    from tilec.zoo.cache import cache_dir, clear_cache

    out = console(args)
    if args.clear:
        count, freed = clear_cache()
        out.print(f"removed {count} cached export(s), {freed / 2**20:.1f} MiB")
        return 0
    path = cache_dir(create=False)
    files = sorted(path.glob("*.onnx")) if path.is_dir() else []
    total = sum(f.stat().st_size for f in files)
    out.print(f"{path}: {len(files)} cached export(s), {total / 2**20:.1f} MiB")
    for f in files:
        out.print(f"  {f.name}  {f.stat().st_size / 2**20:.1f} MiB")
    return 0
