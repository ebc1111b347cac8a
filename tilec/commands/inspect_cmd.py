"""``tilec inspect MODEL``: what was captured -- op counts, parameters, MACs, largest tensors."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from rich.table import Table

from tilec.commands.common import add_model_args, console
from tilec.opinfo import build_graph_info


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("inspect", parents=[parent], help="print the captured graph's summary",
                       description="Capture MODEL (no lowering) and print op counts by type, "
                                   "parameters, MACs and the largest activations.")
    add_model_args(p, target=False)
    p.add_argument("--top", type=int, default=8, help="how many of the largest tensors to list")
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    p.set_defaults(func=run)


def summarize(captured, top: int = 8) -> dict:
    """The inspect summary as plain data (also used by tests and benchmarks)."""
    # Inspect reports the model as stored (its own dtypes), before any precision is chosen.
    info = build_graph_info(captured.graph, weight_bits=32, act_bits=32, source=captured.source)
    counts = Counter(op.op_type if not op.activation else f"{op.op_type}+{op.activation}"
                     for op in info.ops)
    tensors = sorted(info.tensors.values(), key=lambda t: (-t.bytes, t.name))[:top]
    return {
        "model": captured.name, "source": captured.source,
        "inputs": {k: list(v) for k, v in captured.input_shapes.items()},
        "outputs": {n: list(info.tensors[n].shape) for n in info.outputs},
        "ops": len(info.ops), "op_counts": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
        "params": info.params, "weight_bytes": info.weight_bytes, "macs": info.macs,
        "largest_tensors": [
            {"name": t.name, "shape": list(t.shape), "bytes": t.bytes,
             "producer": t.producer} for t in tensors
        ],
    }


def run(args: argparse.Namespace) -> int:
    from tilec.capture import capture

    captured = capture(args.model, batch=args.batch, image_size=args.image_size,
                       input_shape=args.input_shape)
    data = summarize(captured, args.top)
    out = console(args)
    out.print(f"[bold]{data['model']}[/] ({data['source']})")
    out.print(f"  inputs:  {', '.join(f'{k} {v}' for k, v in data['inputs'].items())}")
    out.print(f"  outputs: {', '.join(f'{k} {v}' for k, v in data['outputs'].items())}")
    out.print(f"  ops: {data['ops']}   parameters: {data['params']:,} "
              f"({data['weight_bytes'] / 2**20:.1f} MiB as stored)   "
              f"MACs: {data['macs'] / 1e9:.2f} G")
    table = Table(title="ops by type", show_edge=False)
    table.add_column("op")
    table.add_column("count", justify="right")
    for op, n in data["op_counts"].items():
        table.add_row(op, str(n))
    out.print(table)
    big = Table(title="largest activations", show_edge=False)
    for col in ("tensor", "shape", "MiB", "produced by"):
        big.add_column(col, justify="right" if col == "MiB" else "left")
    for t in data["largest_tensors"]:
        big.add_row(t["name"], "x".join(map(str, t["shape"])), f"{t['bytes'] / 2**20:.1f}",
                    t["producer"] or "(input)")
    out.print(big)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
    return 0
