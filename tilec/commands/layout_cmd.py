"""``tilec layout buffers.csv --capacity BYTES``: offsets for buffers with known lifetimes.

The planner's layout stage on its own (tilec.plan.layout): reads the common ``id,lower,upper,size``
CSV (lifetimes half-open ``[lower, upper)``), prints or writes an ``offset`` column, and exits 1
with the reason when the buffers cannot fit: the live-bytes lower bound at some step exceeds the
capacity, the exact search proved no layout exists, or none was found within the limit.
"""

from __future__ import annotations

import argparse

from tilec.commands.common import console, output_file, positive_float, positive_int
from tilec.errors import EXIT_DOES_NOT_FIT, EXIT_FITS, InputError


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "layout", parents=[parent], help="assign offsets to buffers with known lifetimes",
        description="Lay out buffers (CSV: id,lower,upper,size; lifetimes half-open "
                    "[lower, upper)) in CAPACITY bytes so that no two buffers live at the same "
                    "time overlap. Greedy first, exact CP-SAT search only if the greedy layouts "
                    "do not fit. Exit 0 with the offsets, 1 with the reason it cannot fit.")
    p.add_argument("csv", metavar="BUFFERS.csv", help="id,lower,upper,size (with header)")
    p.add_argument("--capacity", "-c", type=positive_int, required=True, metavar="BYTES",
                   help="bytes available")
    p.add_argument("--output", "-o", type=output_file, metavar="OUT.csv",
                   help="write id,lower,upper,size,offset here (default: print)")
    p.add_argument("--time-limit", type=positive_float, default=10.0, metavar="S",
                   help="time limit of the exact search in seconds (default 10)")
    p.add_argument("--no-exact", action="store_true",
                   help="greedy only (answers 'unknown' instead of searching exactly)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tilec.plan.cpsat import SolveSettings
    from tilec.plan.layout import (
        MAX_VALUE,
        OK,
        allocate,
        check_layout,
        csv_text,
        read_csv,
        write_csv,
    )

    if args.capacity > MAX_VALUE:
        raise InputError(f"--capacity: at most {MAX_VALUE:,} bytes (the exact search's integers "
                         "are 62-bit)")
    items = read_csv(args.csv)
    settings = SolveSettings(time_limit=args.time_limit,
                             deterministic_limit=max(0.1, args.time_limit), workers=1)
    result = allocate(items, args.capacity, exact=not args.no_exact, settings=settings)
    if result.status != OK:
        verdict = "does not fit" if result.status == "infeasible" else "unknown"
        console(args).print(f"[red]{verdict}[/]: {result.reason}")
        return EXIT_DOES_NOT_FIT
    errors = check_layout(items, result.offsets, args.capacity)
    if errors:  # the allocator broke its own contract
        from tilec.errors import InternalError

        raise InternalError("layout check failed: " + "; ".join(errors[:3]))
    if args.output:
        write_csv(args.output, items, result.offsets)
    else:
        print(csv_text(items, result.offsets), end="")
    if not args.quiet:
        err = console(args, stderr=True)
        noun = "buffer" if len(items) == 1 else "buffers"
        err.print(f"fits: {len(items)} {noun}, peak {result.peak:,} of {args.capacity:,} bytes "
                  f"(live-bytes lower bound {result.lower_bound:,}; {result.method})")
    return EXIT_FITS
