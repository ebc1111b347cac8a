"""Terminal summary, shared report helpers and ``tilec report`` on saved plans."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import (
    all_plans,
    does_not_fit_plan,
    gc200_plan,
    northpole_plan,
    op_too_large_plan,
    unknown_plan,
)
from rich.console import Console

from tilec.cli import main
from tilec.plan.model import Plan
from tilec.report import data
from tilec.report.terminal import print_plan


def roundtrip(plan: Plan) -> Plan:
    return Plan.from_dict(json.loads(plan.to_json()))


def text_of(plan: Plan, verbose: bool = False, width: int = 120) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, highlight=False, soft_wrap=False,
                      color_system=None)
    print_plan(plan, console, verbose=verbose)
    return buf.getvalue()


# ----------------------------------------------------------------------------------- helpers
def test_formatting() -> None:
    assert data.fmt_bytes(512) == "512 B"
    assert data.fmt_bytes(612_352) == "598.0 KiB"
    assert data.fmt_bytes(1_310_720) == "1.25 MiB"
    assert data.fmt_bytes(-226_100) == "-220.8 KiB"
    assert data.fmt_count(3_490_000_000, "MAC") == "3.49 GMAC"
    assert data.fmt_seconds(0.00153) == "1.53 ms"
    assert data.fmt_seconds(4.12e-4) == "412 µs"
    assert data.fmt_ranges([[0, 368], [400, 401]]) == "0-367, 400"
    assert data.fmt_split({"rows": 8, "out_ch": 4}) == "out_ch4xrows8"
    assert data.fmt_split({}) == "single"
    assert data.fmt_answer("max_image_size", [320, 320]) == "320×320"
    assert data.fmt_answer("max_batch", None) == "none in the searched range"
    assert data.fmt_answer("max_batch", None, status="bound") == "none in the searched range"
    # every value proven not to fit (down to batch 1): plainly none
    assert data.fmt_answer("max_batch", None, status="exact") == "none"


def test_rect_tiles_are_named_as_rectangles() -> None:
    plan = northpole_plan()
    cols = plan.target.grid[1]
    rect = [[r * cols + 3, r * cols + 7] for r in range(2, 6)]
    assert data.fmt_tiles(plan, rect) == "rows 2-5 × cols 3-6"
    assert data.fmt_tiles(plan, [[5, 6]]) == "row 0 × col 5"
    ragged = [[2 * cols + 3, 2 * cols + 7], [3 * cols + 4, 3 * cols + 7]]
    assert data.fmt_tiles(plan, ragged) == data.fmt_ranges(ragged)
    assert data.fmt_tiles(gc200_plan(), [[0, 368]]) == "0-367"


@pytest.mark.parametrize(("grid", "tiles", "expected"), [
    ([16, 16], 256, (16, 16)),  # NorthPole: the mesh as it is
    ([16, 92], 1472, (16, 92)),  # the gc200 target's heatmap grid
    ([1, 1472], 1472, (32, 46)),  # a one-row "grid": a readable 3:2 rectangle instead
    ([4, 4], 15, (3, 5)),  # grid inconsistent with the tile count: ignore it
    ([1, 1217], 1217, (29, 43)),  # a prime count: ragged last row
])
def test_display_grid(grid: list[int], tiles: int, expected: tuple[int, int]) -> None:
    plan = gc200_plan()
    plan.target.grid, plan.target.tiles = grid, tiles
    rows, cols = data.display_grid(plan)
    assert (rows, cols) == expected
    assert rows * cols >= tiles > (rows - 1) * cols


def test_tile_details_agree_with_the_memory_summary() -> None:
    """Per-tile peaks recomputed from the buffers (difference arrays) match the summary the
    fixture computed by plain slicing -- two independent computations."""
    for name, plan in all_plans().items():
        details = data.tile_details(plan)
        if plan.memory is None:
            assert details is None, name
            continue
        assert details is not None
        assert details.peak.tolist() == plan.memory.per_tile_peak, name
        assert (details.by_category.sum(axis=0) == details.peak).all(), name
        t, s = plan.memory.peak_tile, plan.memory.peak_step
        assert details.peak_step[t] == s or details.peak[t] == plan.memory.peak_bytes
        at_peak = {c: int(details.by_category[i][t]) for i, c in enumerate(details.categories)
                   if details.by_category[i][t]}
        assert at_peak == plan.memory.by_category_at_peak, name


def test_top_tile_groups_merge_equal_neighbours() -> None:
    plan = gc200_plan()
    groups = data.top_tile_groups(plan, 5)
    peaks = plan.memory.per_tile_peak  # type: ignore[union-attr]
    assert groups[0][2] == max(peaks)
    for start, stop, peak in groups:
        assert all(peaks[t] == peak for t in range(start, stop))
        assert start == 0 or peaks[start - 1] != peak
        assert stop == len(peaks) or peaks[stop] != peak
    assert [g[2] for g in groups] == sorted((g[2] for g in groups), reverse=True)


# ----------------------------------------------------------------------------------- terminal
def test_fitting_summary() -> None:
    plan = gc200_plan()
    mem = plan.memory
    assert mem is not None
    out = text_of(plan)
    lines = out.splitlines()
    assert lines[0] == "tilec · yolo-synth on gc200 · batch 2 · 416×416 · fp16"
    assert lines[1].startswith(" FITS ") and "verified placement (4 independent checks" in out
    budget = plan.target.budget_per_tile
    assert (f"tile {mem.peak_tile} at step {mem.peak_step} ({plan.steps[mem.peak_step].ops[0]}): "
            f"{data.fmt_bytes(mem.peak_bytes)} of {data.fmt_bytes(budget)} "
            f"({100 * mem.peak_bytes / budget:.1f} %) · headroom "
            f"{data.fmt_bytes(budget - mem.peak_bytes)}\n") in out  # no redundant 2nd percentage
    assert "images/s" in out and data.fmt_seconds(plan.latency.seconds) in out  # type: ignore
    for cat, b in mem.by_category_at_peak.items():
        assert any(line.split()[:2] == [cat, f"{b:,}"] for line in lines), cat
    assert f"total      {mem.peak_bytes:,}" in out
    start, stop, _ = data.top_tile_groups(plan, 1)[0]
    assert f"{start}-{stop - 1} ({stop - start})" in out
    assert "note: precision: fp16 is the gc200 default" in out
    assert "ops (" not in out  # the per-op table only with --verbose
    assert len(lines) < 40, "the default summary is meant to be read in ten seconds"


def test_verbose_adds_every_op() -> None:
    plan = gc200_plan()
    out = text_of(plan, verbose=True, width=200)
    assert f"ops ({len(plan.ops)}) by superstep" in out
    for op in plan.ops:
        assert op.name in out


def test_diagnosis_panel() -> None:
    plan = does_not_fit_plan()
    d = plan.diagnosis
    assert d is not None
    out = text_of(plan)
    assert out.splitlines()[1].startswith(" DOES NOT FIT (a: chip capacity) ")
    assert "why it does not fit" in out
    assert "evidence (a) chip capacity · re-checked independently" in out
    assert f"needs {data.fmt_bytes(d.bytes_needed)} ({d.bytes_needed:,} B)" in out
    assert f"{data.fmt_bytes(d.over_by)} over the" in out
    # what fills the worst spot: the op running there, the tensors held there and the others'
    # always-live bytes -- three groups that add up to the bytes needed (no "live ops (31)" list
    # that reads as 31 ops running at once)
    assert "live ops" not in out
    here = data.spot(plan, d.worst_tile, d.worst_step)
    assert here is not None and here.total == d.bytes_needed
    assert sum(b for _, b in here.running + here.tensors + here.resident) == d.bytes_needed
    assert [n for n, _ in here.running] == [o.name for o in plan.ops if o.step == d.worst_step
                                            and any(a <= d.worst_tile < c for a, c in o.tiles)]
    flat = " ".join(out.split())  # the panel wraps long lines
    assert f"running there: {here.running[0][0]} {data.fmt_bytes(here.running[0][1])}" in flat
    biggest = max(d.live_tensors, key=lambda t: t["bytes"])
    assert f"tensors held there ({len(here.tensors)}, largest first): {biggest['name']} " \
           f"{data.fmt_bytes(biggest['bytes'])}" in flat
    assert (f"always-live there: {data.fmt_bytes(here.resident_bytes)} from "
            f"{len(here.resident)} other ops") in flat
    assert "largest batch that fits" in out and " 4 " in out
    assert "224×224" in out and "1.25 MiB (1,310,720 B)" in out
    assert "latency" not in out, "no latency for a placement that does not fit"
    assert "over by" in out


def test_unknown_and_no_placement() -> None:
    out = text_of(unknown_plan())
    assert out.splitlines()[1].startswith(" UNKNOWN (d: search limit) ")
    assert "why no placement was found" in out
    assert "gap 25.0 %" in out and "of the best partial placement" in out
    out = text_of(op_too_large_plan())
    assert out.splitlines()[1].startswith(" DOES NOT FIT (b: op too large) ")
    assert "worst: op fc1: needs" in out
    assert "smallest SRAM per tile that fits" in out and "none in the searched range" in out
    assert "peak" not in out.split("why")[0], "no placement, so no peak line"


def test_readable_without_a_terminal() -> None:
    """Plain text when captured: no escape codes, nothing wider than the console."""
    for plan in all_plans().values():
        out = text_of(plan, verbose=True, width=100)
        assert "\x1b[" not in out
        assert max(len(line) for line in out.splitlines()) <= 100


@pytest.mark.parametrize("name", sorted(all_plans()))
def test_round_trip_prints_the_same(name: str) -> None:
    plan = all_plans()[name]
    again = roundtrip(plan)
    assert again.to_json() == plan.to_json()
    assert text_of(again, verbose=True) == text_of(plan, verbose=True)


# ----------------------------------------------------------------------------------- CLI
def test_report_command_prints_what_compile_printed(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`tilec report plan.json` == what compile prints for that plan (same renderer, same
    console as the compile command; the plan went through its JSON)."""
    from tilec.commands.common import console

    for name, plan in all_plans().items():
        path = tmp_path / f"{name}.json"
        plan.save(path)
        print_plan(plan, console(None), verbose=False)  # what compile_cmd.run prints
        expected = capsys.readouterr().out
        code = main(["report", str(path)])
        got = capsys.readouterr()
        assert got.out == expected, name
        assert code == (0 if plan.status == "fits" else 1), name


def test_report_command_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plan.json"
    does_not_fit_plan().save(path)
    code = main(["report", str(path), "--html", str(tmp_path / "r.html"),
                 "--trace", str(tmp_path / "t.json"), "-v"])
    assert code == 1
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert "traceEvents" in json.loads((tmp_path / "t.json").read_text())
    assert "by superstep" in capsys.readouterr().out


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"),
    ("{not json", "not valid JSON (line 1, column 2"),
    ("[1, 2]", "not a tilec plan"),
    ('{"schema": "other"}', "not a tilec plan (schema field is 'other'"),
    ('{"schema": "tilec.plan", "version": 99}', "version 99 is not supported"),
])
def test_report_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          content: str | None, message: str) -> None:
    path = tmp_path / "plan.json"
    if content is not None:
        path.write_text(content)
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tilec: error: {path}: ") and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_report_names_the_bad_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_ = json.loads(gc200_plan().to_json())
    data_["ops"][3]["step"] = "three"
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data_))
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert "ops[3].step: expected int, got a string 'three'" in err
    del data_["ops"][3]["step"]
    path.write_text(json.dumps(data_))
    assert main(["report", str(path)]) == 2
    assert "ops[3]: 'step' is missing" in capsys.readouterr().err


def test_memory_summary_is_consistent_with_occupancy() -> None:
    """Sanity of the fixtures themselves: the summary's peak is the max of per-tile peaks."""
    for plan in all_plans().values():
        if plan.memory is None:
            continue
        peaks = np.asarray(plan.memory.per_tile_peak)
        assert plan.memory.peak_bytes == peaks.max()
        assert peaks[plan.memory.peak_tile] == peaks.max()
        tl = plan.memory.worst_tile_timeline[plan.memory.peak_step]
        assert sum(tl.values()) == plan.memory.peak_bytes


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["ops"][0].update(tiles=[[0, 5000]]), "ops[0].tiles: tile range [0, 5000] is "
                                                       "not inside [0, 1472)"),
    (lambda d: d["ops"][0].update(step=999), "ops[0].step: 999 is not a superstep"),
    (lambda d: d["buffers"][1].update(first=9, end=3), "buffers[1]: lifetime [9, 3) is not in"),
    (lambda d: d["memory"].update(per_tile_peak=[1, 2]), "memory.per_tile_peak: 2 values for"),
])
def test_report_rejects_inconsistent_plans(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           change: object, message: str) -> None:
    data_ = json.loads(gc200_plan().to_json())
    change(data_)  # type: ignore[operator]
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data_))
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: inconsistent plan: {message}" in err and len(err.splitlines()) == 1


def test_all_zero_summary_means_no_placement() -> None:
    """The planner may attach an empty summary to a diagnosis made before placing anything."""
    from tilec.plan.model import MemorySummary
    from tilec.report.html import render_html
    from tilec.report.trace import trace_events

    plan = op_too_large_plan()
    plan.memory = MemorySummary(peak_bytes=0, peak_tile=0, peak_step=0,
                                per_tile_peak=[0] * plan.target.tiles, worst_tile_timeline=[],
                                chip_timeline=[])
    out = text_of(plan)
    assert "peak" not in out.split("why")[0] and "fullest tiles" not in out
    assert "No placement was made" in render_html(plan)
    assert not any(e["ph"] == "C" for e in trace_events(plan)["traceEvents"])
