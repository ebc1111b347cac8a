"""``tilec layout buffers.csv --capacity BYTES``: offsets for buffers with known lifetimes.

The planner's layout stage on its own (tilec.plan.layout): reads the common ``id,lower,upper,size``
CSV (lifetimes half-open ``[lower, upper)``; optional ``alignment`` and ``region`` columns), prints
or writes an ``offset`` column, and exits 1 with the reason when the buffers cannot fit: the
live-bytes lower bound at some step exceeds the capacity, the exact search proved no layout exists,
or none was found within the limit ("unknown"). ``--validate SOLUTION.csv`` re-checks a layout
someone else made (overlaps in time and address, capacity, alignment, regions).

The result line (``fits`` / ``does not fit`` / ``unknown`` / ``valid`` / ``invalid``) goes to
stderr, also with ``--quiet``: it is the result, and stdout stays pure CSV.
"""

from __future__ import annotations

import argparse

from tilec.commands.common import console, output_file, positive_float, positive_int
from tilec.errors import EXIT_DOES_NOT_FIT, EXIT_FITS, InputError


def region_arg(text: str) -> tuple[str, int, int]:
    """argparse type for ``--region NAME=START:END`` (an address window, half-open)."""
    name, sep, span = text.partition("=")
    start, sep2, end = span.partition(":")
    try:
        lo, hi = int(start), int(end)
    except ValueError:
        lo = hi = -1
    if not sep or not sep2 or not name.strip() or lo < 0 or hi <= lo:
        raise argparse.ArgumentTypeError(
            f"expected NAME=START:END with 0 <= START < END (bytes), got '{text}'")
    return name.strip(), lo, hi


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "layout", parents=[parent], help="assign offsets to buffers with known lifetimes",
        description="Lay out buffers (CSV: id,lower,upper,size[,alignment][,region]; lifetimes "
                    "half-open [lower, upper)) in CAPACITY bytes so that no two buffers live at "
                    "the same time overlap. Greedy first; if it does not fit, an exact search "
                    "over canonical layouts (complete: it finds a layout or proves none exists), "
                    "then CP-SAT on small instances. Exit 0 with the offsets, 1 with the reason "
                    "it cannot fit (or is unknown). With --validate, re-check a solution CSV: "
                    "exit 0 if valid, 1 if not.")
    p.add_argument("csv", metavar="BUFFERS.csv", nargs="?",
                   help="id,lower,upper,size[,alignment][,region] (with header)")
    p.add_argument("--capacity", "-c", type=positive_int, required=True, metavar="BYTES",
                   help="bytes available")
    p.add_argument("--region", action="append", type=region_arg, default=[],
                   metavar="NAME=START:END",
                   help="an address window [START, END) that buffers with region NAME must lie "
                        "in, e.g. a tile's interleaved memory (repeatable)")
    p.add_argument("--output", "-o", type=output_file, metavar="OUT.csv",
                   help="write id,lower,upper,size[,alignment,region],offset here "
                        "(default: print)")
    p.add_argument("--validate", metavar="SOLUTION.csv",
                   help="re-check this solution (the CSV with an offset column) instead of "
                        "solving; with BUFFERS.csv too, it must hold exactly those buffers")
    p.add_argument("--time-limit", type=positive_float, default=10.0, metavar="S",
                   help="time limit of the exact search in seconds (default 10)")
    p.add_argument("--no-exact", action="store_true",
                   help="greedy only (answers 'unknown' instead of searching exactly)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tilec.plan.layout import MAX_VALUE

    if args.capacity > MAX_VALUE:
        raise InputError(f"--capacity: at most {MAX_VALUE:,} bytes (the exact search's integers "
                         "are 62-bit)")
    regions: dict[str, tuple[int, int]] = {}
    for name, lo, hi in args.region:
        if name in regions:
            raise InputError(f"--region: '{name}' given twice")
        if hi > args.capacity:
            raise InputError(f"--region {name}={lo}:{hi}: ends beyond the capacity "
                             f"({args.capacity:,} bytes)")
        regions[name] = (lo, hi)
    if args.validate:
        return _validate(args, regions)
    if not args.csv:
        raise InputError("layout: give BUFFERS.csv to solve, or --validate SOLUTION.csv")
    return _solve(args, regions)


def _solve(args: argparse.Namespace, regions: dict[str, tuple[int, int]]) -> int:
    from tilec.plan.cpsat import SolveSettings
    from tilec.plan.layout import OK, allocate, check_layout, csv_text, read_csv, write_csv

    items = read_csv(args.csv, regions)
    settings = SolveSettings(time_limit=args.time_limit,
                             deterministic_limit=max(0.1, args.time_limit), workers=1)
    result = allocate(items, args.capacity, exact=not args.no_exact, settings=settings)
    err = console(args, stderr=True)
    if result.status != OK:
        verdict = "does not fit" if result.status == "infeasible" else "unknown"
        err.print(f"[red]{verdict}[/]: {result.reason}", soft_wrap=True)
        return EXIT_DOES_NOT_FIT
    errors = check_layout(items, result.offsets, args.capacity)
    if errors:  # the allocator broke its own contract
        from tilec.errors import InternalError

        raise InternalError("layout check failed: " + "; ".join(errors[:3]))
    if args.output:
        write_csv(args.output, items, result.offsets)
    else:
        print(csv_text(items, result.offsets), end="")
    noun = "buffer" if len(items) == 1 else "buffers"
    err.print(f"fits: {len(items)} {noun}, peak {result.peak:,} of {args.capacity:,} bytes "
              f"(live-bytes lower bound {result.lower_bound:,}; {result.method})", soft_wrap=True)
    return EXIT_FITS


def _validate(args: argparse.Namespace, regions: dict[str, tuple[int, int]]) -> int:
    from tilec.plan.layout import check_layout, peak_of, read_csv

    items, offsets = read_csv(args.validate, regions, with_offsets=True)
    problems: list[str] = []
    if args.csv:  # the solution must be for these buffers, unchanged
        wanted = {it.id: it for it in read_csv(args.csv, regions)}
        got = {it.id: it for it in items}
        for ident in sorted(set(wanted) - set(got)):
            problems.append(f"{ident}: in {args.csv} but not in the solution")
        for ident in sorted(set(got) - set(wanted)):
            problems.append(f"{ident}: in the solution but not in {args.csv}")
        for ident in sorted(set(got) & set(wanted)):
            a, b = wanted[ident], got[ident]
            if (a.lower, a.upper, a.size) != (b.lower, b.upper, b.size):
                problems.append(f"{ident}: lifetime/size [{b.lower}, {b.upper}) x {b.size} in "
                                f"the solution, [{a.lower}, {a.upper}) x {a.size} in {args.csv}")
            if a.align > b.align or a.region != b.region:
                problems.append(f"{ident}: alignment/region differ from {args.csv}")
        items = [wanted.get(i, got[i]) for i in got]  # the constraints of BUFFERS.csv
    problems += check_layout(items, offsets, args.capacity)
    err = console(args, stderr=True)
    noun = "buffer" if len(items) == 1 else "buffers"
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        err.print(f"[red]invalid[/]: {args.validate}: {len(problems)} problem(s): "
                  + "; ".join(problems[:5]) + more, soft_wrap=True)
        return EXIT_DOES_NOT_FIT
    err.print(f"valid: {len(items)} {noun}, peak {peak_of(items, offsets):,} of "
              f"{args.capacity:,} bytes", soft_wrap=True)
    return EXIT_FITS
