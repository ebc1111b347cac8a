"""--precision auto: sensitivity, the knapsack against brute force, confirmation, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from tilec.passes._testing import Builder
from tilec.targets import load_target

from tilec.capture import capture
from tilec.cli import main
from tilec.compile import CompileOptions, compile_model, graph_info, lower
from tilec.plan.model import Plan
from tilec.plan.partition import partition
from tilec.plan.pipeline import lower_bounds
from tilec.precision import knapsack, sensitivity
from tilec.precision.auto import map_data, map_toml, parse_spec

# A NorthPole of 4 cores with 180,000 B each: this net's weights (spread over the array) plus
# its largest layer do not fit at int8 (bound (b) holds) but fit at int4 -- asserted below, so
# the fixture cannot silently stop exercising the choice.
FITTING_BYTES = 180_000
TINY_BYTES = 16_384  # _wide's second layer's activations alone do not fit a core at any precision


def _net() -> onnx.ModelProto:
    b = Builder(seed=3)
    x = b.input("x", [1, 3, 32, 32])
    y = b.op("Relu", [b.conv(x, 3, 16, 3, bias=True, name="stem")])
    y = b.op("Relu", [b.conv(y, 16, 64, 3, bias=True, name="down")])
    y = b.op("Relu", [b.conv(y, 64, 128, 3, bias=True, name="wide")])
    y = b.op("Relu", [b.conv(y, 128, 128, 3, bias=True, name="deep")])
    b.output(b.conv(y, 128, 8, 1, bias=True, name="head"))
    return b.model()


def _target(tmp: Path, base: str, bytes_per_tile: int, tiles: int = 4) -> str:
    grid = "[2, 2]" if tiles == 4 else f"[1, {tiles}]"
    p = tmp / f"{base}-{bytes_per_tile}.toml"
    p.write_text(f'[target]\nbase = "{base}"\nname = "{base}{tiles}"\ndescription = "test"\n'
                 f"[chip]\ntiles = {tiles}\ngrid = {grid}\n[memory]\n"
                 f"bytes_per_tile = {bytes_per_tile}\n[ranges]\n")
    return str(p)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("auto")
    onnx.save(_net(), d / "net.onnx")
    return d


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TILEC_CACHE_DIR", str(tmp_path / "cache"))


def _terms(model: str, target_path: str):
    target = load_target(target_path)
    spec = parse_spec("auto", target)
    cands = list(spec.candidates)
    cap = capture(model)
    names = [n for n in target.default_passes(spec.ceiling) if n != "quantize"]
    low = lower(cap, target, CompileOptions(precision=spec.ceiling, passes=names, verify="off"))
    layers, _ = sensitivity.find_layers(low.graph)
    infos = {p: graph_info(low.graph, cap, target, p) for p in cands}
    parts = {p: partition(infos[p], target) for p in cands}
    mm = knapsack.memory_model(infos, parts, target, [r.name for r in layers], cands)
    return target, cands, low, layers, infos, parts, mm


# ----------------------------------------------------------------------------- the byte terms
@pytest.mark.parametrize("base", ["gc200", "northpole"])
def test_uniform_maps_reproduce_the_planner_bounds(work, base) -> None:
    """At a uniform map the knapsack's terms sum to the planner's own (a) and (b) -- exactly
    where activations stay 16-bit (gc200); on NorthPole (b) exactly, and (a) at the ceiling (the
    map's other ops keep the ceiling's activation width, so lower uniform maps differ there)."""
    target, cands, _, _, infos, parts, mm = _terms(str(work / "net.onnx"),
                                                   _target(work, base, 10**6))
    for k, p in enumerate(cands):
        bd = lower_bounds(infos[p], target, parts[p])
        va = max(c.value(mm, mm.uniform(k)) for c in mm.constraints if c.kind == "a")
        vb = max(c.value(mm, mm.uniform(k)) for c in mm.constraints if c.kind == "b")
        assert vb == bd["b"].needed
        if base == "gc200" or k == 0:
            assert va == bd["a"].needed
        else:
            assert va >= bd["a"].needed


@pytest.mark.parametrize("base", ["gc200", "northpole"])
def test_cpsat_choice_equals_brute_force(work, base) -> None:
    """Over every map of the 5-layer net (3^5 or 4^5), at margins from loose to impossible,
    CP-SAT's optimum costs what the brute force's does and satisfies every constraint."""
    _, cands, _, layers, _, _, mm = _terms(str(work / "net.onnx"), _target(work, base, 10**6))
    names = [r.name for r in layers]
    rng = np.random.default_rng(7)
    kinds = {"a": [c for c in mm.constraints if c.kind == "a"],
             "b": [c for c in mm.constraints if c.kind == "b"]}
    lo = {kind: max(mm.floor(c) for c in cs) for kind, cs in kinds.items()}
    hi = {kind: max(c.value(mm, mm.uniform(0)) for c in cs) for kind, cs in kinds.items()}
    checked = 0
    # 0: the ceiling fits; 1: only maps at every constraint's floor; 1.2: none
    for f in (0.0, 0.25, 0.5, 0.75, 0.95, 1.2):
        costs = knapsack.integer_costs({
            n: sorted(rng.uniform(0, 1, len(cands)).tolist()) for n in names})
        mm.margin_chip = int(mm.capacity - hi["a"] + f * max(0, hi["a"] - lo["a"]))
        mm.margin_tile = int(mm.budget - hi["b"] + f * max(0, hi["b"] - lo["b"]))
        got = knapsack.solve(mm, costs)
        want = knapsack.brute_force(mm, costs)
        assert (got.choice is None) == (want.choice is None)
        if want.choice is None:
            assert got.optimal  # proven infeasible
            continue
        assert got.optimal and got.objective == want.objective
        assert not mm.violations(got.choice)
        assert got.choice == want.choice  # the tie-break makes the optimum unique here
        checked += 1
    assert checked >= 3  # the sweep really constrained the choice


# ----------------------------------------------------------------------------- sensitivity
def test_measured_sensitivity_is_deterministic_and_consistent(work) -> None:
    target, cands, low, layers, *_ = _terms(str(work / "net.onnx"),
                                            _target(work, "northpole", 10**6))
    a = sensitivity.Instrument(low.graph, cands, target.act_bits)
    b = sensitivity.Instrument(low.graph, cands, target.act_bits)
    ta, tb = sensitivity.measure(a, cands), sensitivity.measure(b, cands)
    assert ta.values == tb.values and ta.runs == len(layers) * len(cands)
    assert a.error({}).rel_l2 == 0.0  # the float reference reproduces itself
    name = layers[2].name
    assert a.error({name: "int4"}).to_dict() == ta.values[name]["int4"]
    # fewer bits, more error -- per layer and uniformly
    for r in layers:
        v = ta.values[r.name]
        assert v["int8"]["rel_l2"] < v["int4"]["rel_l2"] < v["int2"]["rel_l2"]
    uni = [a.error(dict.fromkeys((r.name for r in layers), p)).rel_l2 for p in cands]
    assert uni == sorted(uni) and uni[0] > 0
    proxy = sensitivity.entropy(low.graph, cands)
    assert all(proxy.cost(r.name, "int8") == 0 for r in layers)
    assert all(0 < proxy.cost(r.name, "int4") < proxy.cost(r.name, "int2") for r in layers)
    # the proxy from the instrument's codes (quantized once for both) is the same table
    assert sensitivity.entropy(low.graph, cands, codes=a.codes).values == proxy.values


def test_sensitivity_key_follows_the_weights(work) -> None:
    target, cands, low, layers, *_ = _terms(str(work / "net.onnx"),
                                            _target(work, "northpole", 10**6))
    k1 = sensitivity.graph_key(low.graph, cands, target.act_bits)
    assert k1 == sensitivity.graph_key(low.graph, cands, target.act_bits)
    node = next(n for n in low.graph.nodes if n.name == layers[1].name)
    w = node.inputs[1]
    w.values = np.asarray(w.values) * np.float32(1.001)
    assert sensitivity.graph_key(low.graph, cands, target.act_bits) != k1
    assert sensitivity.graph_key(low.graph, cands[:2], target.act_bits) != k1


def test_spearman() -> None:
    assert sensitivity.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert sensitivity.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert sensitivity.spearman([1, 1, 1], [1, 2, 3]) is None
    assert sensitivity.spearman([1, 2], [1, 2]) is None


# ----------------------------------------------------------------------------- end to end
def test_auto_fits_where_int8_does_not_with_less_error_than_int4(work, tmp_path, capsys) -> None:
    model, target = str(work / "net.onnx"), _target(work, "northpole", FITTING_BYTES)
    plans = {p: compile_model(model, target, CompileOptions(precision=p, what_if=False))[0]
             for p in ("int8", "int4")}
    assert plans["int8"].status == "does_not_fit" and plans["int4"].status == "fits"

    out1, out2 = tmp_path / "a.toml", tmp_path / "b.toml"
    j1 = tmp_path / "a.json"
    argv = ["compile", model, "--target", target, "--precision", "auto", "--band", "off"]
    assert main([*argv, "--save-precision-map", str(out1), "--json", str(j1)]) == 0
    text = capsys.readouterr().out
    assert "precision auto" in text and "a per-layer map that fits" in text
    data = json.loads(j1.read_text())
    auto = data["precision_auto"]
    assert auto["verdict"] == "fits" and data["status"] == "fits"
    assert set(auto["map"].values()) <= {"int8", "int4", "int2"}
    assert len(set(auto["map"].values())) > 1  # mixed
    err = auto["error"]
    assert err["map"]["rel_l2"] < err["uniform"]["int4"]["error"]["rel_l2"]
    assert err["uniform"]["int8"]["uniform_bounds"] == "b"  # why uniform int8 does not fit
    assert err["uniform"]["int4"]["uniform_bounds"] is None
    assert auto["weight_bytes"]["saved"] > 0
    assert Plan.from_dict(data).precision_auto == auto  # reads back

    # deterministic: same model, same map (and the second run reads the cached sensitivity)
    j2 = tmp_path / "b.json"
    assert main([*argv, "--save-precision-map", str(out2), "--json", str(j2)]) == 0
    assert "read from the cache" in capsys.readouterr().out
    assert out1.read_text() == out2.read_text()
    assert j1.read_text() == j2.read_text()  # byte-identical plans, cached or not

    # the written map is a --precision-map the compiler reads: the same fitting plan
    assert main(["compile", model, "--target", target, "--precision", "int8",
                 "--precision-map", str(out1), "--band", "off"]) == 0
    capsys.readouterr()


def _wide() -> onnx.ModelProto:
    """A 128 px stem with 32 channels: the layer after it reads 128 KiB even at int2."""
    b = Builder(seed=4)
    x = b.input("x", [1, 3, 128, 128])
    y = b.op("Relu", [b.conv(x, 3, 32, 3, bias=True, name="stem")])
    y = b.op("Relu", [b.conv(y, 32, 32, 3, stride=2, bias=True, name="down")])
    b.output(b.conv(y, 32, 8, 1, bias=True, name="head"))
    return b.model()


def test_no_precision_fits_says_so_and_why(work, capsys) -> None:
    """Cores too small for an early layer's own activations: no map can help, and the reason
    says it is that op's own bytes, not the weights."""
    onnx.save(_wide(), work / "wide.onnx")
    model, target = str(work / "wide.onnx"), _target(work, "northpole", TINY_BYTES)
    code = main(["compile", model, "--target", target, "--precision", "auto", "--band", "off",
                 "--no-what-if", "--save-precision-map", str(work / "none.toml")])
    got = capsys.readouterr()
    out = " ".join(got.out.split())  # lines wrap at the console's width
    assert "not written, no map was chosen" in got.err and not (work / "none.toml").exists()
    assert code == 1
    assert "no per-layer precision map can fit" in out
    assert "(b) op 'down'" in out and "alone exceed a tile" in out
    assert "no per-layer precision can fit" in out
    for p in ("int8", "int4", "int2"):
        assert f"uniform {p}: ruled out by (b)" in out
    # the same holds for the lowest precision compiled on its own
    plan, _ = compile_model(model, target, CompileOptions(precision="int2", what_if=False))
    assert plan.diagnosis.evidence.kind == "op_too_large"


@pytest.mark.parametrize("argv, msg", [
    (["--precision", "auto:int3"], "'auto:int3' is not auto or auto:FLOOR"),
    (["--precision", "autoo"], "unknown precision 'autoo'"),
    (["--precision", "auto:fp16"], "'auto:fp16' is not auto or auto:FLOOR"),
    (["--precision", "int8", "--sensitivity", "entropy"], "--sensitivity applies only to"),
    (["--precision", "auto", "--precision-map", "x.toml"], "drop --precision-map"),
])
def test_bad_auto_arguments_exit_2_with_one_line(work, argv, msg, capsys) -> None:
    code = main(["compile", str(work / "net.onnx"), "--target", "northpole", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert msg in err and len(err.splitlines()) == 1


def test_map_file_round_trips_names_with_glob_characters() -> None:
    from tilec.passes._precision import parse

    choice = {"a[0].conv": "int4", "b*x": "int2", "plain": "int8"}
    data = map_data(choice, "int8")
    text = map_toml(data, ["test"])
    import tomllib

    pmap = parse(tomllib.loads(text), "m.toml")
    got = pmap.resolve(["a[0].conv", "b*x", "plain", "bxx"], set(), set(), "int8")
    assert got == {"a[0].conv": "int4", "b*x": "int2", "plain": "int8", "bxx": "int8"}


def test_oom_what_if_names_a_mixed_map_next_to_the_uniform_answer(work) -> None:
    model, target = str(work / "net.onnx"), _target(work, "northpole", FITTING_BYTES)
    plan, _ = compile_model(model, target, CompileOptions(precision="int8"))
    assert plan.status == "does_not_fit"
    w = next(w for w in plan.diagnosis.what_if if w.question == "min_precision")
    assert w.answer == "int4"
    assert "mixed precision that fits: int8 x" in w.note and "int4 x" in w.note
    assert "verified plan" in w.note
    # with a map given by hand, nothing is added
    plan2, _ = compile_model(model, target, CompileOptions(
        precision="int8", precision_map={"default": "int8", "layers": [["stem", "int8"]]}))
    w2 = next(w for w in plan2.diagnosis.what_if if w.question == "min_precision")
    assert "mixed precision" not in w2.note


@pytest.mark.parametrize("base", ["gc200", "northpole"])
def test_a_failed_map_is_cut_off(work, base) -> None:
    """After a confirmation plan of a map fails by N bytes, that map no longer satisfies the
    knapsack (the next choice must save more, as the bounds count it)."""
    from tilec.precision.auto import _cut

    _, _, _, _, _, _, mm = _terms(str(work / "net.onnx"), _target(work, base, 10**6))
    choice = mm.uniform(0)
    assert not mm.violations(choice)
    entry: dict = {}
    _cut(mm, choice, entry, 100)
    assert mm.violations(choice) and entry["cut"] in ("a", "b") and entry["need"] >= 100
    before = (mm.margin_chip, mm.margin_tile)
    _cut(mm, mm.uniform(1), {}, 1)  # a margin never shrinks
    assert mm.margin_chip >= before[0] and mm.margin_tile >= before[1]


def _graph_bytes(lowered) -> bytes:
    from tilec.ir import to_onnx

    return to_onnx(lowered.graph).graph.SerializeToString(deterministic=True)


@pytest.mark.parametrize("base, per_tile, precision", [
    ("northpole", FITTING_BYTES, "int8"),  # an integer compile: lowered once more, unquantized
    ("gc200", 400_000, None),  # fp16 does not fit, int8 does; a mixed map fits
    ("gc200", 300_000, None),  # int4 fits; the mixed map is cut off and none confirmed
])
def test_mixed_what_if_on_the_compiles_graph_answers_as_a_fresh_compile(
        work, base, per_tile, precision) -> None:
    """The OOM what-if's mixed precision reuses the compile's lowered graph (no capture, no
    lowering, confirmation from ``quantize`` on): its answer -- map, errors, rounds, bytes, the
    confirmed plan and its graph -- is the one capturing and compiling afresh gives."""
    from dataclasses import replace

    from tilec.precision.auto import compile_auto

    model, target = str(work / "net.onnx"), load_target(_target(work, base, per_tile))
    options = CompileOptions(precision=precision)
    plan, lowered = compile_model(model, target, options)
    w = next(w for w in plan.diagnosis.what_if if w.question == "min_precision")
    assert w.answer and "mixed precision" in w.note
    compiled = plan.model.precision
    opts = replace(options, verify="off", what_if=False, what_if_fits=False, band=False,
                   precision=None, progress=None)
    kw = {"spec_text": f"auto:{w.answer}", "method": "cached", "ceiling": compiled,
          "max_rounds": 2}
    fresh_plan, fresh_low, fresh = compile_auto(model, target, opts, **kw)
    if "quantize" in lowered.passes:
        names = [n for n in lowered.passes if n != "quantize"]
        unq = lower(capture(model), target, replace(opts, precision=compiled, passes=names))
    else:
        unq = lowered
    graph_before = _graph_bytes(unq)
    reused_plan, reused_low, reused = compile_auto(model, target, opts, base=unq, **kw)
    assert reused.result == fresh.result
    assert reused.result["rounds"] and reused.map_file == fresh.map_file
    assert reused_plan.status == fresh_plan.status
    assert _graph_bytes(reused_low) == _graph_bytes(fresh_low)
    assert reused_low.info.ops == fresh_low.info.ops
    assert _graph_bytes(unq) == graph_before  # the compile's own graph is left as it was
    # and the what-if's note is this answer
    if reused.result["verdict"] == "fits":
        assert "mixed precision that fits" in w.note
        assert all(f"{p} x{n}" in w.note for p, n in reused.result["counts"].items() if n)
    else:
        assert "mixed precision: none confirmed" in w.note
