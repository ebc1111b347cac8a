"""CP-SAT settings shared by every model the planner solves.

Reproducibility. CP-SAT's own parallel portfolio is not deterministic (workers race and share
solutions), and its deterministic variant (``interleave_search``) measured poorly on the placement
models: it spreads a short budget over many strategies and rarely improved the greedy hint within a
second, where one full-problem worker closed most of the gap. So the planner runs its own portfolio:
``workers`` independent *single-worker* solves in parallel threads (CP-SAT releases the GIL while
solving), each with its own seed, and keeps the best answer, ties to the lowest worker index. Each
solve is stopped by a *deterministic* time limit (work units, not seconds), so the answer does not
depend on machine load or thread timing. The wall-clock limit (``--time-limit``) is only a safety
net: if it is what stops a solve, the result is still valid but may differ between runs, and the
plan says so.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ortools.sat.python import cp_model

# Deterministic seconds. On this project's 2-core machine one deterministic second of the placement
# model is roughly 3-6 wall seconds (measured with benchmarks/plan_time.py); the defaults keep the
# placement improvement near a second.
DEFAULT_DETERMINISTIC = 0.3


@dataclass(frozen=True)
class SolveSettings:
    time_limit: float = 10.0  # wall seconds (safety net)
    deterministic_limit: float = DEFAULT_DETERMINISTIC
    seed: int = 0
    workers: int = 2


def solver(settings: SolveSettings, *, seed_offset: int = 0) -> cp_model.CpSolver:
    """A single-worker CpSolver configured for reproducible results."""
    s = cp_model.CpSolver()
    p = s.parameters
    p.random_seed = int(settings.seed) + seed_offset
    p.max_time_in_seconds = float(settings.time_limit)
    p.max_deterministic_time = float(settings.deterministic_limit)
    p.num_workers = 1
    return s


@dataclass
class Outcome:
    status: int
    solver: cp_model.CpSolver
    worker: int
    wall_clock_hit: bool

    @property
    def status_name(self) -> str:
        return self.solver.status_name(self.status)

    @property
    def has_solution(self) -> bool:
        return self.status in (cp_model.OPTIMAL, cp_model.FEASIBLE)


def hit_wall_clock(s: cp_model.CpSolver, settings: SolveSettings) -> bool:
    """Did the wall-clock safety net (rather than the deterministic limit) stop the search?"""
    return s.wall_time >= settings.time_limit * 0.999 and s.deterministic_time < (
        settings.deterministic_limit * 0.999)


def solve(model: cp_model.CpModel, settings: SolveSettings, *, minimize: bool = True
          ) -> Outcome:
    """Solve with ``settings.workers`` single-worker solves in parallel; the best answer wins.

    Best: a proof (OPTIMAL / INFEASIBLE) first, then the lowest objective, then the lowest worker
    index -- all deterministic given the model, the seed and the deterministic limit.
    """
    n = max(1, int(settings.workers))
    solvers = [solver(settings, seed_offset=i) for i in range(n)]
    statuses: list[int] = [cp_model.UNKNOWN] * n

    def run(i: int) -> None:
        statuses[i] = solvers[i].solve(model)

    if n == 1:
        run(0)
    else:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def key(i: int) -> tuple:
        st = statuses[i]
        proven = st in (cp_model.OPTIMAL, cp_model.INFEASIBLE)
        has = st in (cp_model.OPTIMAL, cp_model.FEASIBLE)
        obj = solvers[i].objective_value if has and minimize else 0.0
        return (not proven, not has, obj, i)

    best = min(range(n), key=key)
    return Outcome(status=statuses[best], solver=solvers[best], worker=best,
                   wall_clock_hit=any(hit_wall_clock(s, settings) for s in solvers))
