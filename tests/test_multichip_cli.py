"""``tilec compile --chips`` end to end on a tiny ONNX model and a two-chip system of small
gc200-like chips: the verdict and the per-chip lines, the JSON (schema v3, deterministic,
``tilec report`` prints the same), replicate and sharded, a version-2 plan still reads, and bad
input (system file, flags) as one line with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tilec.cli import main
from tilec.plan.model import STATUS_FITS, Plan
from tilec.report.schema import type_errors, validation_errors

MODEL = str(Path(__file__).parent / "data" / "good" / "tiny_cnn.onnx")

CHIP = """[target]
base = "gc200"
name = "small"
description = "multi-chip test: a 16-tile gc200"
[chip]
tiles = 16
grid = [4, 4]
[memory]
bytes_per_tile = 65536
"""
SYSTEM = """[system]
name = "duo"
chip = "small.toml"
chips = 2
[link]
bandwidth_bytes_per_s = 1e9
latency_s = 1e-6
"""


@pytest.fixture(scope="module")
def duo(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("duo")
    (tmp / "small.toml").write_text(CHIP)
    (tmp / "duo.toml").write_text(SYSTEM)
    return str(tmp / "duo.toml")


@pytest.fixture(scope="module")
def compiled(duo: str, tmp_path_factory) -> tuple[int, str, Path]:
    """Batch 32 does not fit one small chip (the single-chip what-if says 30 is the most) but
    does fit two."""
    out = tmp_path_factory.mktemp("out") / "p.json"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["compile", MODEL, "--target", duo, "--batch", "32", "--chips", "auto",
                     "--json", str(out)])
    return code, buf.getvalue(), out


def test_auto_finds_two_chips_with_each_stage_verified(compiled) -> None:
    code, out, path = compiled
    assert code == 0, out
    assert "FITS" in out and "on 2 of 2 chips" in out and "every chip's plan verified" in out
    assert "tried   1 chip: does not fit; 2 chips: fits" in out
    plan = Plan.load(path)
    cs = plan.chips
    assert plan.status == STATUS_FITS and cs is not None and cs.chips == 2
    assert cs.micro_batch == 32 and cs.micro_batches == 1
    assert cs.cut[0] == 0 and cs.cut[-1] == len(cs.order) == plan.model.ops
    for st in cs.stages:
        sub = Plan.from_dict(st.plan)
        assert sub.status == STATUS_FITS and sub.verification.ok
        assert [op.name for op in sub.ops] == cs.order[st.start:st.end]
        assert st.peak_bytes == sub.memory.peak_bytes <= plan.target.budget_per_tile
    # what chip 0 sends is what chip 1 receives, priced on the system's link
    a, b = cs.stages
    assert a.send_bytes == b.recv_bytes > 0
    assert b.link_seconds == pytest.approx(1e-6 + b.recv_bytes / 1e9)
    assert cs.latency_seconds == pytest.approx(a.stage_seconds + b.stage_seconds)
    assert cs.interval_seconds == pytest.approx(max(a.stage_seconds, b.stage_seconds))


def test_the_json_validates_and_is_deterministic(compiled, duo: str, tmp_path: Path,
                                                 capsys) -> None:
    _, _, path = compiled
    data = json.loads(path.read_text())
    assert data["version"] == 3
    assert validation_errors(data) == [] and type_errors(data) == []
    again = tmp_path / "again.json"
    assert main(["compile", MODEL, "--target", duo, "--batch", "32", "--chips", "auto",
                 "--json", str(again)]) == 0
    assert again.read_text() == path.read_text()
    capsys.readouterr()


def test_report_prints_what_compile_printed(compiled, capsys) -> None:
    _, out, path = compiled
    assert main(["report", str(path)]) == 0
    assert capsys.readouterr().out.strip() == out.strip()


def test_a_version_2_plan_still_reads(compiled, tmp_path: Path, capsys) -> None:
    _, _, path = compiled
    stage = json.loads(path.read_text())["chips"]["stages"][0]["plan"]
    stage["version"] = 2
    del stage["chips"]
    old = tmp_path / "v2.json"
    old.write_text(json.dumps(stage))
    plan = Plan.load(old)
    assert plan.chips is None and plan.version == 3
    assert main(["report", str(old)]) == 0
    assert "FITS" in capsys.readouterr().out


def test_replicate_splits_the_batch(duo: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.json"
    assert main(["compile", MODEL, "--target", duo, "--batch", "32", "--chips", "2",
                 "--mode", "replicate", "--json", str(out)]) == 0
    cs = Plan.load(out).chips
    assert cs.mode == "replicate" and [s.batch for s in cs.stages] == [16, 16]
    assert cs.stages[1].same_as == 0 and cs.stages[1].plan is None
    assert Plan.from_dict(cs.stages[0].plan).model.batch == 16
    assert "whole model (as chip 0)" in capsys.readouterr().out


def test_sharded_latency_is_the_sum(duo: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "s.json"
    assert main(["compile", MODEL, "--target", duo, "--batch", "32", "--chips", "2",
                 "--mode", "sharded", "--json", str(out)]) == 0
    cs = Plan.load(out).chips
    total = sum(s.stage_seconds for s in cs.stages)
    assert cs.latency_seconds == pytest.approx(total) == pytest.approx(cs.interval_seconds)
    capsys.readouterr()


@pytest.mark.parametrize(("argv", "message"), [
    (["--target", "gc200", "--chips", "2"], "'gc200' is a single chip"),
    (["--target", "m2000", "--chips", "5"], "m2000 has 4 chips, asked for 5"),
    (["--target", "m2000", "--chips", "two"], "neither a chip count nor 'auto'"),
    (["--target", "m2000", "--what-if"], "--what-if: not available over several chips"),
])
def test_bad_flags_are_one_line_exit_2(argv: list[str], message: str, capsys) -> None:
    assert main(["compile", MODEL, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err


def test_a_bad_system_file_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SYSTEM.replace("chips = 2", "chips = -1").replace("small.toml", "gc200"))
    assert main(["compile", MODEL, "--target", str(bad), "--chips", "auto"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and "[system] chips" in err


def test_the_trace_has_one_track_per_chip(compiled, tmp_path: Path, capsys) -> None:
    _, _, path = compiled
    out = tmp_path / "t.json"
    assert main(["report", str(path), "--trace", str(out)]) == 0
    capsys.readouterr()
    trace = json.loads(out.read_text())
    names = [e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "thread_name"]
    assert len(names) == 2 and names[0].startswith("chip 0: ops [0, ")
    plan = Plan.load(path)
    a, b = plan.chips.stages
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    stage1 = next(e for e in slices if e["tid"] == 2 and e["name"] == "stage 1")
    recv = next(e for e in slices if e["tid"] == 2 and e["name"] == "link in")
    # chip 1 starts receiving when chip 0 has finished its stage
    assert recv["ts"] == pytest.approx(a.stage_seconds * 1e6, abs=1e-2)
    assert stage1["dur"] == pytest.approx(b.device_seconds * 1e6, abs=1e-2)
    steps = [e for e in slices if e["tid"] == 2 and e["name"].startswith("step ")]
    assert len(steps) == len(Plan.from_dict(b.plan).steps)


def test_a_single_chip_diagnosis_says_how_many_chips(duo: str, tmp_path: Path, capsys) -> None:
    chip = str(Path(duo).parent / "small.toml")
    out = tmp_path / "d.json"
    assert main(["compile", MODEL, "--target", chip, "--batch", "32", "--band", "off",
                 "--json", str(out)]) == 1
    assert "chips needed (pipeline or sharded)" in capsys.readouterr().out
    answers = {w.question: w for w in Plan.load(out).diagnosis.what_if}
    w = answers["chips_needed"]
    assert w.answer == 2 and w.status in ("exact", "bound") and "each stage verified" in w.note


def test_the_html_page_shows_every_chip(compiled, tmp_path: Path, capsys) -> None:
    _, _, path = compiled
    out = tmp_path / "p.html"
    assert main(["report", str(path), "--html", str(out)]) == 0
    capsys.readouterr()
    page = out.read_text()
    plan = Plan.load(path)
    assert page.count("<iframe") == 2 and page.count('class="seg"') == 2
    for st in plan.chips.stages:
        assert f"chip {st.chip}" in page and st.first_op in page
    assert main(["report", str(path), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "--onnx: not written for a multi-chip plan" in capsys.readouterr().err
