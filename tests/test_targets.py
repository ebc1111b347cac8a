"""Targets: the four built-ins load, validate and say where every constant comes from; custom
target files are validated field by field with one clear line; ``tilec targets`` works."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tilec.targets import load_target, names
from tilec.targets.spec import BUILTIN_DIR, KNOWN_PRECISIONS, extract_comments

from tilec.cli import main
from tilec.compile import PRECISIONS
from tilec.costmodel import CostModel, Target
from tilec.errors import InputError

BUILTINS = ["bow", "gc2", "gc200", "northpole"]


# ------------------------------------------------------------------------------ built-ins
def test_names_are_the_four_builtins():
    assert names() == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_loads_and_implements_the_protocol(name):
    t = load_target(name)
    assert isinstance(t, Target)
    assert isinstance(t.cost_model, CostModel)
    assert t.name == name
    assert t.grid[0] * t.grid[1] == t.tiles
    assert 0 <= t.reserved_bytes_per_tile < t.bytes_per_tile
    assert t.budget_per_tile == t.bytes_per_tile - t.reserved_bytes_per_tile
    assert t.default_precision in t.precisions
    assert t.placement in ("range", "rect")
    for p in t.precisions:
        assert t.weight_bits(p) in (2, 4, 8, 16, 32)
        assert t.act_bits(p) in (2, 4, 8, 16, 32)
        assert t.default_passes(p)


def test_known_precisions_match_the_compiler():
    assert tuple(PRECISIONS) == KNOWN_PRECISIONS


def test_gc200_facts():
    t = load_target("gc200")
    assert t.tiles == 1472
    assert t.bytes_per_tile == 638_976  # Poplar's own OOM message
    assert t.total_bytes == 940_572_672
    assert t.clock_hz == 1.33e9
    assert t.placement == "range"
    assert t.io_location == "host" and t.framebuffer_bytes == 0
    # peak fp16: 250 TFLOP/s = 125 TMAC/s; fp32 62.5 TFLOP/s
    assert t.peak_macs_per_s("fp16") == pytest.approx(125e12, rel=0.01)
    assert t.peak_macs_per_s("fp32") == pytest.approx(31.25e12, rel=0.01)
    # low-bit weights are storage only: activations stay fp16, compute on the fp16 datapath
    assert (t.weight_bits("int4"), t.act_bits("int4")) == (4, 16)
    assert t.compute_datapath("int8") == "fp16"
    assert "quantize" not in t.default_passes("fp16")
    assert "quantize" in t.default_passes("int8")


def test_gc2_and_bow_differ_from_gc200_where_the_silicon_does():
    gc200, gc2, bow = load_target("gc200"), load_target("gc2"), load_target("bow")
    assert (gc2.tiles, gc2.bytes_per_tile) == (1216, 256 * 1024)
    assert gc2.peak_macs_per_s("fp16") * 2 == pytest.approx(124.5e12, rel=0.01)
    assert gc2.peak_macs_per_s("fp32") * 2 == pytest.approx(31.1e12, rel=0.01)
    assert bow.clock_hz == 1.85e9
    assert (bow.tiles, bow.bytes_per_tile) == (gc200.tiles, gc200.bytes_per_tile)
    assert bow.chain == ("bow.toml", "gc200.toml")
    # fitted cycle constants carry over unchanged (same Poplar, same tile)
    assert bow.spec["exchange"]["superstep_cycles"] == gc200.spec["exchange"]["superstep_cycles"]


def test_northpole_reads_kb_as_kib():
    t = load_target("northpole")
    assert t.bytes_per_tile == 768 * 1024
    assert t.tiles * t.bytes_per_tile == 192 * 2**20  # the slides' "192MB"
    assert t.framebuffer_bytes == 32 * 2**20
    assert t.io_location == "framebuffer"
    assert t.grid == (16, 16) and t.placement == "rect"
    assert t.precisions == ("int8", "int4", "int2")
    assert t.default_precision == "int8" and t.default_precision_note
    assert "quantize" in t.default_passes("int8")
    with pytest.raises(InputError, match="does not support precision 'fp16'"):
        t.weight_bits("fp16")
    # 2048 / 4096 / 8192 ops per core per cycle = 1024 / 2048 / 4096 MACs
    assert [t.peak_macs_per_cycle(p) for p in t.precisions] == [1024, 2048, 4096]


_CITED = re.compile(r"hw:|hw/slides|hardware\.md|slides|modelling choice|FITTED", re.I)


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_constant_cites_its_source(name):
    t = load_target(name)
    missing = [f"[{s}] {k}" for s, k, _v, src, _f in t.rows()
               if k not in ("name", "description", "default_note") and not k.startswith("= ")
               and not _CITED.search(src)]
    assert not missing, f"{name}: fields without a source comment: {missing}"


def test_fitted_constants_are_marked_and_few():
    text = (BUILTIN_DIR / "gc200.toml").read_text()
    fitted = sorted(k.split(".")[-1] for k, v in extract_comments(text).items()
                    if v.startswith("FITTED"))
    assert fitted == ["bytes_per_compute_set", "conv_efficiency", "superstep_cycles"]
    for name in ("northpole.toml", "gc2.toml", "bow.toml"):
        comments = extract_comments((BUILTIN_DIR / name).read_text())
        assert not any(v.startswith("FITTED") for v in comments.values()), name


def test_with_bytes_per_tile_changes_only_the_tile():
    t = load_target("gc200")
    big = t.with_bytes_per_tile(1 << 20)
    assert big.bytes_per_tile == 1 << 20 and t.bytes_per_tile == 638_976
    assert big.budget_per_tile == (1 << 20) - t.reserved_bytes_per_tile
    assert (big.tiles, big.clock_hz, big.name) == (t.tiles, t.clock_hz, t.name)
    assert big.cost_model is not t.cost_model
    small = t.with_bytes_per_tile(1000)
    assert small.budget_per_tile == 0
    with pytest.raises(InputError):
        t.with_bytes_per_tile(0)


def test_unknown_name_lists_the_names():
    with pytest.raises(InputError) as exc:
        load_target("gc300")
    msg = str(exc.value)
    assert "gc300" in msg and all(n in msg for n in BUILTINS)


# ------------------------------------------------------------------------ custom targets
GOOD = """
[target]
base = "gc200"
name = "my-chip"
description = "GC200 with 1 MiB tiles"

[memory]
bytes_per_tile = 1048576  # modelling choice: what-if
"""


def write(tmp_path: Path, text: str, name: str = "my-chip.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_custom_target_overrides_its_base(tmp_path):
    t = load_target(str(write(tmp_path, GOOD)))
    assert t.name == "my-chip" and t.bytes_per_tile == 1 << 20
    assert t.tiles == 1472 and t.family == "ipu"
    assert t.chain[1] == "gc200.toml"
    assert t.comment("memory.bytes_per_tile") == "modelling choice: what-if"
    assert t.comment("chip.tiles").startswith("hw:")  # inherited with its source


def full_copy(name: str) -> str:
    return (BUILTIN_DIR / f"{name}.toml").read_text()


@pytest.mark.parametrize("old,new,field,expect", [
    ("bytes_per_tile = 638976", "bytes_per_tile = -5", "[memory] bytes_per_tile",
     "must be a positive integer, got -5"),
    ("tiles = 1472", 'tiles = "many"', "[chip] tiles", "must be a positive integer, got 'many'"),
    ("clock_hz = 1.33e9", "", "[chip] clock_hz", "is missing"),
    ("bytes_per_tile = 638976", "byte_per_tile = 638976", "[memory]",
     "unknown field 'byte_per_tile'"),
    ("grid = [16, 92]", "grid = [16, 90]", "[chip] grid", "does not equal tiles = 1472"),
    ("grid = [16, 92]", "grid = [16]", "[chip] grid", "must be a list of two positive integers"),
    ('default = "fp16"', 'default = "int16"', "[precision] default",
     "must be one of the supported precisions"),
    ("conv_efficiency = ", "conv_efficiency = 1.5  # ", "[compute] conv_efficiency",
     "must be a number in (0, 1]"),
    ('cost_model = "ipu"', 'cost_model = "gpu"', "[target] cost_model", "must be one of"),
    ("macs_per_cycle = { fp32 = 16, fp16 = 64 }", "macs_per_cycle = { fp32 = 16 }",
     "[precision.fp16] compute", "[compute] macs_per_cycle has no 'fp16' entry"),
    ("code_share = 0.16", "code_share = 0.5", "[overheads]", "must be 1, got 1.34"),
    ("worker_stacks = 3072", "worker_stacks = 700000", "reserved bytes per tile", "must be less"),
])
def test_bad_field_names_file_and_field(tmp_path, old, new, field, expect):
    text = full_copy("gc200")
    assert old in text
    p = write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(InputError) as exc:
        load_target(str(p))
    msg = str(exc.value)
    assert msg.startswith(f"{p}: "), msg
    assert field in msg and expect in msg, msg
    assert "\n" not in msg


def test_the_issue_example_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, GOOD.replace("1048576", "-5"))
    with pytest.raises(InputError) as exc:
        load_target("my-chip.toml")
    assert str(exc.value).startswith(
        "my-chip.toml: [memory] bytes_per_tile must be a positive integer, got -5")


def test_unknown_section_missing_section_and_bad_toml(tmp_path):
    p = write(tmp_path, GOOD + "\n[cache]\nsize = 3\n")
    with pytest.raises(InputError, match=r"unknown section \[cache\]"):
        load_target(str(p))
    p = write(tmp_path, full_copy("northpole").replace("[noc]", "[nocs]"), "np.toml")
    with pytest.raises(InputError, match=r"np.toml: unknown section \[nocs\]"):
        load_target(str(p))
    p = write(tmp_path, "[target\nname = 1", "broken.toml")
    with pytest.raises(InputError, match=r"broken.toml: invalid TOML"):
        load_target(str(p))
    with pytest.raises(InputError, match="no such target file"):
        load_target(str(tmp_path / "absent.toml"))


def test_bad_base_and_base_cycle(tmp_path):
    p = write(tmp_path, GOOD.replace('base = "gc200"', 'base = "gc999"'))
    with pytest.raises(InputError, match="base 'gc999' is neither a built-in target"):
        load_target(str(p))
    write(tmp_path, '[target]\nbase = "b.toml"\n', "a.toml")
    write(tmp_path, '[target]\nbase = "a.toml"\n', "b.toml")
    with pytest.raises(InputError, match="makes a cycle"):
        load_target(str(tmp_path / "a.toml"))


def test_precision_tables_must_match_supported(tmp_path):
    text = full_copy("northpole").replace('supported = ["int8", "int4", "int2"]',
                                          'supported = ["int8", "int4"]')
    p = write(tmp_path, text, "np.toml")
    with pytest.raises(InputError, match=r"\[precision.int2\] describes a precision"):
        load_target(str(p))
    text = full_copy("northpole").replace('supported = ["int8", "int4", "int2"]',
                                          'supported = ["int4", "int8", "int2"]')
    with pytest.raises(InputError, match="ordered highest first"):
        load_target(str(write(tmp_path, text, "np2.toml")))


def test_northpole_must_be_rect(tmp_path):
    text = full_copy("northpole").replace('placement = "rect"', 'placement = "range"')
    with pytest.raises(InputError, match="placement must be 'rect'"):
        load_target(str(write(tmp_path, text, "np.toml")))


# ---------------------------------------------------------------------------------- CLI
def test_cli_table_lists_every_target(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for n in BUILTINS:
        assert n in out
    assert "624 KiB" in out and "768 KiB" in out and "rect" in out


def test_cli_json_summary(capsys):
    assert main(["targets", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == BUILTINS
    gc200 = data[BUILTINS.index("gc200")]
    assert gc200["total_bytes"] == 940_572_672 and gc200["placement"] == "range"


def test_cli_show_prints_every_field(capsys):
    t = load_target("northpole")
    assert main(["targets", "show", "northpole", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    keys = {(f["section"], f["key"]) for f in data["fields"]}
    assert keys == {(s, k) for s, k, *_ in t.rows()}
    assert ("memory", "bytes_per_tile") in keys and ("io", "framebuffer_bytes") in keys
    assert main(["targets", "show", "gc200"]) == 0
    out = capsys.readouterr().out
    assert "availableMemoryProportion" in out and "superstep_cycles" in out


def test_cli_show_custom_target_and_bad_one(tmp_path, capsys):
    good = write(tmp_path, GOOD)
    assert main(["targets", "show", str(good)]) == 0
    assert "my-chip" in capsys.readouterr().out
    bad = write(tmp_path, GOOD.replace("1048576", "-5"), "bad.toml")
    assert main(["targets", "show", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "bad.toml: [memory] bytes_per_tile must be a positive integer, got -5" in err[0]
    assert main(["targets", "show", "nope"]) == 2
    assert "unknown target 'nope'" in capsys.readouterr().err


def test_cli_exit_code_through_the_script(tmp_path):
    bad = write(tmp_path, GOOD.replace("1048576", "-5"), "bad.toml")
    proc = subprocess.run([sys.executable, "-m", "tilec", "targets", "show", str(bad)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "bytes_per_tile must be a positive integer" in proc.stderr
