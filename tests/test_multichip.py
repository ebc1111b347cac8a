"""Multi-chip partitioning (tilec/plan/multichip.py): the cut the lazy DP chooses against brute
force over every cut on small toy models (every stage planned by the single-chip planner), each
stage's plan against the verifier, the stage sub-graphs at the cut, and the chip-system files."""

from __future__ import annotations

import functools
import itertools
import math
import random
from pathlib import Path

import pytest
from plan_fixtures import OpSpec, toy_graph, toy_target
from tilec.targets.system import is_system, load_system, system_names

from tilec.errors import InputError
from tilec.opinfo import GraphInfo
from tilec.plan import Options
from tilec.plan.cpsat import SolveSettings
from tilec.plan.model import STATUS_FITS
from tilec.plan.multichip import CutProblem, best_cut, search, stage_info, stage_summary
from tilec.plan.verify import verify

LINK_BW = 1e9  # toy link: 1 byte per ns, 5 ns per transfer


def link(nbytes: int) -> float:
    return 0.0 if nbytes <= 0 else 5e-9 + nbytes / LINK_BW


def random_net(seed: int, n: int = 9) -> GraphInfo:
    """A chain with random skip connections and per-op costs: ``always`` bytes that make long
    stages overflow a 4-tile chip of 100 B per tile, and cycles that differ per op."""
    rng = random.Random(seed)
    ops, made = [], ["x"]
    sizes = {"x": rng.randint(4, 20)}
    for i in range(n):
        ins = [made[-1]]
        if i >= 2 and rng.random() < 0.4:
            skip = made[rng.randrange(1, len(made) - 1)]
            if skip not in ins:
                ins.append(skip)
        a1, a2 = rng.randint(20, 70), rng.randint(12, 40)
        c1 = rng.randint(50, 400)
        toy = {1: (a1, rng.randint(0, 10), 5, c1), 2: (a2, rng.randint(0, 10), 3, c1 // 2 + 7)}
        ops.append(OpSpec(f"op{i}", ins, [f"t{i}"], toy))
        sizes[f"t{i}"] = rng.randint(4, 40)
        made.append(f"t{i}")
    return toy_graph(ops, sizes=sizes)


def planned_objective(problem: CutProblem, cut: list[int], mode: str) -> tuple[float, float]:
    vals = [problem.value(a, b) for a, b in itertools.pairwise(cut)]
    return (max(vals), sum(vals)) if mode == "pipeline" else (sum(vals), max(vals))


FAST = Options(settings=SolveSettings(time_limit=5.0, deterministic_limit=0.05, workers=1))


@functools.cache
def every_stage_planned(seed: int) -> CutProblem:
    """The instance of ``seed`` with every stage ``[a, b)`` planned (no bounds, no DP)."""
    info, target = random_net(seed), toy_target(4, 100)
    problem = CutProblem(info, target, link, FAST)
    for a in range(problem.n):
        for b in range(a + 1, problem.n + 1):
            problem.evals[(a, b)] = _plan_only(problem, a, b)
    return problem


def brute_force(seed: int, k: int, mode: str) -> tuple[tuple[float, float], list]:
    """Every cut into ``k`` stages, each stage planned (no bounds, no DP, no assumption)."""
    problem = every_stage_planned(seed)
    n = problem.n
    best: tuple[tuple[float, float], list] = ((math.inf, math.inf), [])
    for inner in itertools.combinations(range(1, n), k - 1):
        cut = [0, *inner, n]
        obj = planned_objective(problem, cut, mode)
        if math.isfinite(obj[0]) and obj < best[0]:
            best = (obj, cut)
    return best


def _plan_only(problem: CutProblem, a: int, b: int):
    """A stage decided by the planner alone (no bound first), for the brute force."""
    from tilec.plan.multichip import StageEval
    from tilec.plan.pipeline import run

    plan = run(stage_info(problem.info, problem.order, a, b), problem.target,
               options=problem.options).plan
    ev = StageEval(a, b, plan.status, "plan", plan=plan)
    if plan.status == STATUS_FITS:
        ev.device_seconds = plan.latency.cycles / problem.clock
    return ev


SEEDS = 5
CASES = [(seed, k, mode) for seed in range(SEEDS) for k in (2, 3)
         for mode in ("pipeline", "sharded")]


@pytest.mark.parametrize(("seed", "k", "mode"), CASES)
def test_the_chosen_cut_is_optimal_by_brute_force(seed: int, k: int, mode: str) -> None:
    info, target = random_net(seed), toy_target(4, 100)
    problem = CutProblem(info, target, link, FAST)
    res = search(problem, k, mode, plan_budget=10_000)
    (want, want_cut) = brute_force(seed, k, mode)
    if not want_cut:
        assert res.status != STATUS_FITS
        return
    assert res.status == STATUS_FITS, res.note
    got = planned_objective(problem, res.cut, mode)
    assert got == pytest.approx(res.objective)
    if res.optimality == "exact":
        assert got[0] == pytest.approx(want[0], rel=1e-12)
        if mode == "pipeline":  # ties on the slowest stage broken by the latency
            assert got[1] == pytest.approx(want[1], rel=1e-12)
    else:  # never better than the optimum; worse only when not claimed exact
        assert got[0] >= want[0] * (1 - 1e-12)


def test_brute_force_cases_are_not_trivial() -> None:
    """Some of the instances above need their cut: a one-stage plan does not fit, and some cut
    into 2 leaves a stage that does not fit either (so the DP has something to avoid)."""
    infeasible_whole, some_stage_fails = 0, 0
    for seed in range(SEEDS):
        problem = every_stage_planned(seed)
        if problem.evals[(0, problem.n)].status != STATUS_FITS:
            infeasible_whole += 1
        if any(problem.evals[(a, b)].status != STATUS_FITS
               for a in range(problem.n) for b in range(a + 1, problem.n)):
            some_stage_fails += 1
    assert infeasible_whole >= SEEDS // 2 and some_stage_fails >= SEEDS // 2


def test_the_search_plans_far_fewer_stages_than_brute_force() -> None:
    info, target = random_net(3, n=12), toy_target(4, 100)
    problem = CutProblem(info, target, link, FAST)
    res = search(problem, 3, "pipeline", plan_budget=10_000)
    assert res.status == STATUS_FITS
    assert problem.plans_made < math.comb(problem.n + 1, 2) / 2


def test_every_stage_plan_passes_the_verifier() -> None:
    info, target = random_net(1), toy_target(4, 100)
    problem = CutProblem(info, target, link, FAST)
    res = search(problem, 3, "pipeline", plan_budget=10_000)
    assert res.status == STATUS_FITS
    stages = stage_summary(problem, res.cut)
    assert [s["start"] for s in stages] == res.cut[:-1]
    for s in stages:
        sub = stage_info(info, problem.order, s["start"], s["end"])
        report = verify(s["plan"], sub, target)
        assert report.ok, report.errors
        assert s["plan"].status == STATUS_FITS


def test_a_stage_sub_graph_reads_and_hands_on_what_crosses_the_cut() -> None:
    # x -> a -> t0 -> b -> t1 -> c(t1, t0) -> t2 ; v = view(t1) read by d
    info = toy_graph([OpSpec("a", ["x"], ["t0"]), OpSpec("b", ["t0"], ["t1"]),
                      OpSpec("v", ["t1"], ["t1v"], kind="view"),
                      OpSpec("c", ["t1", "t0"], ["t2"]), OpSpec("d", ["t1v", "t2"], ["t3"])],
                     sizes={"x": 2, "t0": 8, "t1": 16, "t1v": 16, "t2": 4, "t3": 1},
                     views={"t1v": "t1"})
    problem = CutProblem(info, toy_target(4, 100), link, Options())
    order = problem.order
    assert order == ("a", "b", "c", "v", "d")  # the schedule the positions index
    first = stage_info(info, order, 0, 2)
    assert first.inputs == ("x",) and set(first.outputs) == {"t0", "t1"}
    second = stage_info(info, order, 2, 5)
    assert set(second.inputs) == {"t1", "t0"} and second.outputs == ("t3",)
    assert second.tensors["t1"].producer is None and second.tensors["t1"].is_input
    assert second.tensors["t1v"].alias_of == "t1"  # the view inside the stage keeps its alias
    late = stage_info(info, order, 4, 5)  # the view's output crosses: its own buffer there
    assert late.tensors["t1v"].alias_of is None and late.tensors["t1v"].is_input
    # bytes received over the links, once per alias class (t1 and its view t1v share 16 B)
    assert problem.link_bytes[2, 5] == 16 + 8  # t1, t0
    assert problem.link_bytes[3, 5] == 16 + 4  # t1 (read by v, then as t1v by d), t2
    assert problem.link_bytes[4, 5] == 16 + 4  # t1v, t2
    assert problem.link_bytes[0, 2] == 0 and problem.link_bytes[1, 5] == 8  # x is host I/O
    # what each chip sends on: t0 and t1 leave the first chip of the cut [0, 2, 5]
    stages = stage_summary(problem, [0, 2, 5])
    assert [s["send_bytes"] for s in stages] == [24, 0]
    assert [s["recv_bytes"] for s in stages] == [0, 24]


def test_an_in_place_concat_split_by_a_cut_keeps_its_slice_apart() -> None:
    info = toy_graph([OpSpec("a", ["x"], ["p"]), OpSpec("b", ["x"], ["q"]),
                      OpSpec("cat", ["p", "q"], ["y"], kind="concat",
                             attrs={"in_place": True})],
                     sizes={"x": 2, "p": 4, "q": 4, "y": 8}, parts={"p": "y", "q": "y"})
    order = [op.name for op in info.ops]
    head, tail = stage_info(info, order, 0, 1), stage_info(info, order, 1, 3)
    assert head.tensors["p"].part_of is None and head.outputs == ("p",)
    assert tail.tensors["p"].part_of is None and tail.tensors["p"].is_input
    assert tail.tensors["q"].part_of == "y"  # both ends inside: still a slice of the concat


def test_best_cut_pipeline_minimises_the_slowest_then_the_sum() -> None:
    import numpy as np

    inf = math.inf
    v = np.full((4, 4), inf)
    v[0, 1], v[1, 3], v[0, 2], v[2, 3], v[1, 2] = 5.0, 5.0, 5.0, 1.0, 4.0
    (top, total), cut = best_cut(v, 2, "pipeline")
    assert top == 5.0 and total == 6.0 and cut == [0, 2, 3]
    (total, _), cut = best_cut(v, 2, "sharded")
    assert total == 6.0 and cut == [0, 2, 3]
    (top, _), cut = best_cut(v, 3, "pipeline")
    assert top == 5.0 and cut == [0, 1, 2, 3]
    assert best_cut(v, 4, "pipeline")[1] == []


# ----------------------------------------------------------------------------- system files
def test_builtin_systems_load_and_cite_their_constants() -> None:
    assert system_names() == ["bow-2000", "m2000", "northpole-x4"]
    for name in system_names():
        s = load_system(name)
        assert is_system(name) and s.chips == 4 and s.link_bytes_per_s > 0
        for key in ("system.chip", "system.chips", "link.bandwidth_bytes_per_s",
                    "link.latency_s"):
            assert s.comments.get(key), f"{name}: {key} cites no source"
    m = load_system("m2000")
    assert m.chip.name == "gc200" and m.link_bytes_per_s == 320e9
    assert m.link_seconds(0) == 0.0 and m.link_seconds(320_000) == pytest.approx(2e-6)
    assert not is_system("gc200")


def _system(tmp_path: Path, body: str) -> str:
    p = tmp_path / "sys.toml"
    p.write_text(body)
    return str(p)


GOOD = ('[system]\nname = "two"\nchip = "gc200"\nchips = 2\n'
        '[link]\nbandwidth_bytes_per_s = 1e9\nlatency_s = 0\n')


@pytest.mark.parametrize(("body", "message"), [
    (GOOD.replace("chips = 2", "chips = 0"), "[system] chips must be an integer from 1"),
    (GOOD.replace('chip = "gc200"', 'chip = "gc999"'), "[system] chip: --target: unknown target"),
    (GOOD.replace("1e9", "-3"), "[link] bandwidth_bytes_per_s must be positive"),
    (GOOD.replace("latency_s = 0", "latency = 0"), "[link] unknown field 'latency'"),
    (GOOD.replace("chips = 2\n", ""), "[system] chips is required"),
    (GOOD + "[extra]\n", "unknown section [extra]"),
    (GOOD.replace("[link]", "[link"), "invalid TOML"),
])
def test_a_bad_system_file_is_one_line_naming_the_field(tmp_path: Path, body: str,
                                                         message: str) -> None:
    path = _system(tmp_path, body)
    assert is_system(path) or "invalid TOML" in message
    with pytest.raises(InputError) as err:
        load_system(path)
    text = str(err.value)
    assert message in text and path in text and "\n" not in text


def test_a_custom_system_file_works(tmp_path: Path) -> None:
    s = load_system(_system(tmp_path, GOOD))
    assert s.name == "two" and s.chips == 2 and s.chip.name == "gc200"


# ----------------------------------------------------------------------- what-if: chips needed
@pytest.mark.parametrize("seed", range(SEEDS))
def test_chips_needed_is_the_fewest_by_brute_force(seed: int) -> None:
    from tilec.plan.multichip import chips_needed
    from tilec.plan.pipeline import run

    info, target = random_net(seed), toy_target(4, 100)
    whole = run(info, target, options=FAST).plan
    if whole.status == STATUS_FITS:
        pytest.skip("fits one chip: the question is not asked")
    w = chips_needed(info, target, FAST, expired=lambda: False,
                     base_proven=whole.status == "does_not_fit")
    brute = every_stage_planned(seed)
    fewest = next((k for k in range(2, brute.n + 1)
                   if brute_force(seed, k, "pipeline")[1]), None)
    assert w.question == "chips_needed"
    if w.status == "exact":
        assert w.answer == fewest
    else:
        assert w.answer is None or w.answer >= fewest
    assert [p["value"] for p in w.probes][:2] == [1, 2]


def test_no_number_of_chips_helps_an_op_too_large_for_one() -> None:
    from tilec.plan.multichip import chips_needed

    big = {1: (500, 0, 1, 10)}  # 500 B on a tile of 100: (b) on every chip
    info = toy_graph([OpSpec("a", ["x"], ["t0"]), OpSpec("b", ["t0"], ["t1"], big),
                      OpSpec("c", ["t1"], ["t2"])])
    w = chips_needed(info, toy_target(4, 100), FAST, expired=lambda: False, base_proven=True)
    assert w.answer is None and w.status == "exact" and "(b)" in w.note


def test_a_spent_budget_is_unknown_never_does_not_fit() -> None:
    info, target = random_net(2), toy_target(4, 100)
    res = search(CutProblem(info, target, link, FAST), 2, "pipeline", plan_budget=0)
    assert res.status == "unknown" and res.cut == [] and "budget" in res.note


def test_the_search_is_deterministic() -> None:
    info, target = random_net(4), toy_target(4, 100)
    a = search(CutProblem(info, target, link, FAST), 3, "pipeline", plan_budget=10_000)
    b = search(CutProblem(info, target, link, FAST), 3, "pipeline", plan_budget=10_000)
    assert (a.status, a.cut, a.objective, a.optimality, a.note) == \
        (b.status, b.cut, b.objective, b.optimality, b.note)
