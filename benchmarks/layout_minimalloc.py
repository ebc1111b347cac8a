"""tilec's layout search on MiniMalloc's public benchmark (the 11 "challenging" instances).

The instances (Moffitt, "MiniMalloc", ASPLOS 2023; github.com/google/minimalloc,
``benchmarks/challenging/*.csv``, Apache-2.0, copied with their LICENSE into
``benchmarks/data/minimalloc/``) are 154-454 buffers each, capacity 1 MiB (the number in the file
name). For each instance this prints tilec's time and verdict, and checks the layout with
tilec's independent checker (``check_layout``: capacity, no two live buffers overlapping).

``--minimalloc PATH`` also runs MiniMalloc's own solver binary on each instance (build it yourself
from their repository; it is not part of tilec) and re-checks its output with the same checker.

``--infeasible`` adds the variants with the capacity cut by one alignment unit (1,024 bytes: the
gcd of all sizes and times in these files). Each needs a definite answer, not a time-out: a proof
that nothing fits (live-bytes bound or the complete search) or a validated layout -- the files
are not all tight: on C and D a layout fits in 1 MiB - 1 KiB (found and validated), so "capacity
minus one unit" is infeasible only where the live bytes reach 1 MiB (A, B, E-I, K: the bound
proves it) or where the search proves it.

Goal (issue 17): 11 of 11 solved, every solution valid, total time <= 2x MiniMalloc's on the same
machine in the same run. Times are wall clock and vary with machine load.

Run: ``python benchmarks/layout_minimalloc.py [--time-limit 60] [--minimalloc PATH]
[--infeasible] [--only A,B]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).parent / "data" / "minimalloc"
UNIT = 1024  # every size, lower and upper in these files is a multiple of 1,024


def instances(only: set[str] | None) -> list[tuple[str, Path, int]]:
    out = []
    for path in sorted(DATA.glob("*.csv")):
        name, cap = path.stem.split(".")
        if only and name not in only:
            continue
        out.append((name, path, int(cap)))
    return out


def run_tilec(path: Path, capacity: int, time_limit: float) -> tuple[str, float, str]:
    from tilec.plan.cpsat import SolveSettings
    from tilec.plan.layout import OK, allocate, check_layout, read_csv

    items = read_csv(path)
    settings = SolveSettings(time_limit=time_limit, deterministic_limit=time_limit, workers=1)
    t0 = time.perf_counter()
    res = allocate(items, capacity, settings=settings)
    dt = time.perf_counter() - t0
    if res.status != OK:
        return res.status, dt, f"{res.method}"
    errors = check_layout(items, res.offsets, capacity)
    return ("ok" if not errors else "INVALID"), dt, (errors[0] if errors else res.method)


def run_minimalloc(binary: str, path: Path, capacity: int,
                   time_limit: float) -> tuple[str, float, str]:
    from tilec.plan.layout import check_layout, read_csv

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.csv"
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([binary, f"--capacity={capacity}", f"--input={path}",
                                   f"--output={out}"], capture_output=True, text=True,
                                  timeout=time_limit)
        except subprocess.TimeoutExpired:
            return "unknown", time.perf_counter() - t0, "timeout"
        dt = time.perf_counter() - t0
        if proc.returncode != 0 or not out.exists():
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            return "failed", dt, f"exit {proc.returncode}: {last[0][:80]}"
        items, offsets = read_csv(out, with_offsets=True)
        errors = check_layout(items, offsets, capacity)
        return ("ok" if not errors else "INVALID"), dt, (errors[0] if errors else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per instance")
    ap.add_argument("--minimalloc", metavar="PATH", help="MiniMalloc's solver binary")
    ap.add_argument("--infeasible", action="store_true",
                    help="also the capacity-minus-one-unit variants (must be proven)")
    ap.add_argument("--only", help="comma-separated instance names, e.g. A,B")
    args = ap.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None

    from tilec.plan.layout_search import kernel

    t0 = time.perf_counter()
    _fn, compiled = kernel()
    print(f"search kernel: {'numba-compiled' if compiled else 'pure Python'}, ready in "
          f"{time.perf_counter() - t0:.1f} s (compile or on-disk cache; not in the times below)")
    rows = []
    cases = [(n, p, c, "feasible") for n, p, c in instances(only)]
    if args.infeasible:
        cases += [(n + "-1u", p, c - UNIT, "cut") for n, p, c in instances(only)]
    head = f"{'instance':10} {'cap':>9}  {'tilec':>8} {'s':>7}"
    if args.minimalloc:
        head += f"   {'minimalloc':>10} {'s':>7}"
    print(head)
    tot_t = tot_m = 0.0
    solved_t = solved_m = 0
    for name, path, cap, kind in cases:
        st, dt, note = run_tilec(path, cap, args.time_limit)
        tot_t += dt
        good = st == "ok" if kind == "feasible" else st in ("ok", "infeasible")
        solved_t += good
        line = f"{name:10} {cap:>9}  {st:>8} {dt:7.2f}"
        if args.minimalloc:
            ms, mdt, mnote = run_minimalloc(args.minimalloc, path, cap, args.time_limit)
            tot_m += mdt
            solved_m += ms == "ok" if kind == "feasible" else ms in ("ok", "failed")
            line += f"   {ms:>10} {mdt:7.2f}"
            note = f"{note} | {mnote}" if mnote else note
        print(f"{line}  {note}", flush=True)
        rows.append((name, st, dt))
    print(f"tilec: {solved_t}/{len(cases)} answered (feasible: solved and valid; cut: valid "
          f"layout or proof), total "
          f"{tot_t:.1f} s")
    if args.minimalloc:
        print(f"minimalloc: {solved_m}/{len(cases)}, total {tot_m:.1f} s; ratio tilec/minimalloc "
              f"{tot_t / max(tot_m, 1e-9):.2f}")
    return 0 if solved_t == len(cases) else 1


if __name__ == "__main__":
    sys.exit(main())
