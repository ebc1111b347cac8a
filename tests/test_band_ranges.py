"""``[ranges]`` in target files: validation (one line naming file, section and field; exit 2),
inheritance, ``TileTarget.with_values``, and ``tilec targets show``."""

from __future__ import annotations

from pathlib import Path

import pytest
from tilec.targets import load_target, names
from tilec.targets.spec import BUILTIN_DIR, extract_comments

from tilec.cli import main
from tilec.errors import InputError


def _write(tmp_path: Path, body: str, name: str = "chip.toml") -> str:
    p = tmp_path / name
    p.write_text('[target]\nbase = "gc200"\nname = "chip"\ndescription = "test"\n' + body)
    return str(p)


@pytest.mark.parametrize("name", names())
def test_builtin_ranges_hold_their_values_and_cite_a_reason(name: str) -> None:
    t = load_target(name)
    assert t.ranges, f"{name} declares no [ranges]"
    for key, (lo, hi) in t.ranges.items():
        assert lo <= t.value(key) <= hi and lo < hi, key
        assert ("modelling choice" in t.comment(f"ranges.{key}")
                or "hw:" in t.comment(f"ranges.{key}")), f"{name}: range of {key} cites nothing"


def test_every_fitted_constant_has_a_range() -> None:
    """Item 4 of issue 12: every FITTED constant gets a plausible range."""
    comments = extract_comments((BUILTIN_DIR / "gc200.toml").read_text())
    fitted = {k for k, v in comments.items() if v.startswith("FITTED")}
    assert fitted and fitted <= set(load_target("gc200").ranges)


def test_gc2_and_bow_inherit_the_ranges() -> None:
    assert load_target("bow").ranges == load_target("gc200").ranges
    assert load_target("gc2").ranges == load_target("gc200").ranges


@pytest.mark.parametrize(("body", "message"), [
    ('[ranges]\n"overheads.bytes_per_compute_sett" = [1, 2]\n',
     "[ranges] 'overheads.bytes_per_compute_sett' is not a field of a 'ipu' target"),
    ('[ranges]\n"splits.policy" = [1, 2]\n', "[ranges] 'splits.policy' is not a numeric field"),
    ('[ranges]\n"overheads.bytes_per_compute_set" = [300, 350]\n',
     "must satisfy low <= value <= high, but the value is 225"),
    ('[ranges]\n"overheads.bytes_per_compute_set" = [100, 150.5]\n',
     "[ranges] overheads.bytes_per_compute_set high must be a non-negative integer, got 150.5"),
    ('[ranges]\n"compute.conv_efficiency" = [0.4, 1.5]\n',
     "[ranges] compute.conv_efficiency high must be a number in (0, 1]"),
    ('[ranges]\n"compute.conv_efficiency" = 0.5\n', "must be [low, high] (or [] for no range)"),
    ('[ranges]\n"compute.conv_efficiency" = [0.4, 0.5, 0.6]\n', "must be [low, high]"),
    ('[ranges.overheads]\nbytes_per_compute_set = [100, 200]\n',
     "write each range as a quoted dotted key"),
    ('[ranges]\n"memory.reserved.vertex_code_library" = [0, 700000]\n',
     "the high end 700000 makes an invalid target (reserved bytes per tile"),
    ('[ranges]\n"overheads.code_share" = [0.1, 0.2]\n', "the low end 0.1 makes an invalid target"),
    ("[ranges]\nx = 1\n", "[ranges] 'x' is not a field"),
    ('[ranges]\n"compute.conv_efficiency" = ["a", 0.6]\n',
     "[ranges] compute.conv_efficiency low must be a number in (0, 1], got 'a'"),
])
def test_bad_ranges_are_one_line_errors(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(InputError) as exc:
        load_target(path)
    text = str(exc.value)
    assert text.startswith(path + ": ") and message in text and "\n" not in text


def test_a_bad_range_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path, '[ranges]\n"exchange.superstep_cycle" = [1, 2]\n')
    code = main(["targets", "show", path])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "exchange.superstep_cycle" in err


def test_custom_targets_inherit_override_and_drop_ranges(tmp_path: Path) -> None:
    base = load_target("gc200").ranges
    path = _write(tmp_path, '[ranges]\n"compute.conv_efficiency" = [0.3, 0.35]\n'
                            '"splits.fastest_slack" = []\n'
                            '"vector_ops.Mish" = [10, 16]\n')
    t = load_target(path)
    assert t.ranges["compute.conv_efficiency"] == (0.3, 0.35)
    assert "splits.fastest_slack" not in t.ranges
    assert t.ranges["vector_ops.Mish"] == (10.0, 16.0)  # a map entry takes a range too
    assert t.ranges["overheads.bytes_per_compute_set"] == base["overheads.bytes_per_compute_set"]


def test_a_value_set_after_its_range_drops_the_base_range(tmp_path: Path) -> None:
    """The base's range described the base's value: a file that sets its own value (here far
    outside it) does not inherit it -- unless it gives a range of its own."""
    path = _write(tmp_path, "[overheads]\nbytes_per_compute_set = 1000\n"
                            "[memory.reserved]\nvertex_code_library = 0\n")
    t = load_target(path)
    assert "overheads.bytes_per_compute_set" not in t.ranges
    assert "memory.reserved.vertex_code_library" not in t.ranges
    assert "compute.conv_efficiency" in t.ranges
    path2 = _write(tmp_path, "[overheads]\nbytes_per_compute_set = 1000\n[ranges]\n"
                             '"overheads.bytes_per_compute_set" = [900, 1100]\n', "b.toml")
    assert load_target(path2).ranges["overheads.bytes_per_compute_set"] == (900, 1100)


def test_with_values_rebuilds_the_cost_model_and_validates() -> None:
    t = load_target("gc200")
    moved = t.with_values({"overheads.bytes_per_compute_set": 300,
                           "memory.reserved.host_exchange": 2048})
    assert moved.value("overheads.bytes_per_compute_set") == 300
    assert t.value("overheads.bytes_per_compute_set") == 225  # the original is untouched
    assert moved.reserved_bytes_per_tile == t.reserved_bytes_per_tile + 1024
    assert moved.cost_model is not t.cost_model and moved.ranges == {}
    assert moved.origin["overheads.bytes_per_compute_set"] == "band"
    with pytest.raises(InputError, match="must be a non-negative integer"):
        t.with_values({"overheads.bytes_per_compute_set": -1})
    with pytest.raises(InputError, match="reserved bytes per tile"):
        t.with_values({"memory.reserved.worker_stacks": 10**6})
    with pytest.raises(InputError, match="not a field this target sets"):
        t.with_values({"overheads.nothing": 1})


def test_moved_constants_change_the_prices() -> None:
    """No stale price is reused: the cost store is keyed by the whole description."""
    from tilec.costmodel import Split
    from tilec.opinfo import OpInfo, WeightInfo

    op = OpInfo(name="c", op_type="Conv", kind="conv", inputs=("x",), outputs=("y",),
                weights=(WeightInfo("w", (32, 16, 3, 3), 16),),
                attrs={"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1] * 4, "group": 1},
                macs=32 * 16 * 16 * 16 * 9, in_shapes=((1, 16, 16, 16),),
                out_shapes=((1, 32, 16, 16),))
    t = load_target("gc200")
    split = Split.of(out_ch=2)
    a = t.cost_model.cost(op, split)
    b = t.with_values({"overheads.bytes_per_compute_set": 300}).cost_model.cost(op, split)
    assert sum(b.always.values()) > sum(a.always.values())


def test_targets_show_lists_the_ranges(capsys) -> None:
    code = main(["targets", "show", "gc200"])
    out, _ = capsys.readouterr()
    assert code == 0 and "[ranges]" in out and "overheads.bytes_per_compute_set" in out
    assert "[173, 292]" in out
