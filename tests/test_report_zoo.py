"""Reports of real plans from the zoo: `tilec compile` with every output flag, then `tilec report`
on the saved JSON. Slow (three real compiles, one with the what-if search), so marked slow.

Checks the issue's "done when": the saved plan and diagnosis validate against the schema,
`tilec report` prints exactly what the compile printed, and every renderer handles real plans
(the trace's format, the page in the browser, the annotated model from the compile equal to the
one re-lowered by `tilec report`).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import onnx
import pytest
from test_report_trace import check_format

from tilec.cli import main
from tilec.plan.model import Plan
from tilec.report.data import tile_details
from tilec.report.schema import consistency_errors, type_errors, validation_errors

pytestmark = pytest.mark.slow

CASES = {
    "gc200": ["yolov4-tiny", "--target", "gc200"],
    "northpole": ["yolov4-tiny", "--target", "northpole"],
    # an op that cannot fit at batch 256 (evidence b), with the what-if search
    "oom": ["yolov4-tiny", "--target", "gc200", "--batch", "256", "--time-limit", "2"],
}


def run(argv: list[str]) -> tuple[int, str]:
    """Run the CLI as a user would from a pipe: (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("zoo")
    results = {}
    for name, args in CASES.items():
        files = {k: tmp / f"{name}.{k}" for k in ("json", "html", "trace.json", "onnx")}
        code, out = run(["compile", *args, "-q", "--json", str(files["json"]),
                         "--html", str(files["html"]), "--trace", str(files["trace.json"]),
                         "--onnx", str(files["onnx"])])
        results[name] = {"code": code, "out": out, **files}
    return results


def test_compile_outcomes(compiled: dict[str, dict[str, Any]]) -> None:
    assert compiled["gc200"]["code"] == 0 and compiled["northpole"]["code"] == 0
    assert compiled["oom"]["code"] == 1
    assert " FITS " in compiled["gc200"]["out"]
    assert " DOES NOT FIT " in compiled["oom"]["out"] and "what would fit" in compiled["oom"]["out"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_saved_plans_validate(compiled: dict[str, dict[str, Any]], name: str) -> None:
    data = json.loads(Path(compiled[name]["json"]).read_text())
    assert validation_errors(data, limit=10) == []
    assert type_errors(data) == []
    assert consistency_errors(Plan.from_dict(data)) == []
    if name == "oom":
        assert data["diagnosis"]["what_if"], "a diagnosis with what-if answers"


@pytest.mark.parametrize("name", sorted(CASES))
def test_report_prints_what_compile_printed(compiled: dict[str, dict[str, Any]],
                                            name: str) -> None:
    code, out = run(["report", str(compiled[name]["json"])])
    assert out == compiled[name]["out"]
    assert code == compiled[name]["code"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_buffers_agree_with_the_planner_summary(compiled: dict[str, dict[str, Any]],
                                                name: str) -> None:
    """What the heatmap's details recompute from the buffers equals the planner's summary."""
    plan = Plan.load(compiled[name]["json"])
    mem = plan.memory
    assert mem is not None
    details = tile_details(plan)
    assert details is not None
    assert details.peak.tolist() == mem.per_tile_peak
    t = mem.peak_tile
    at_peak = {c: int(details.by_category[i][t]) for i, c in enumerate(details.categories)
               if details.by_category[i][t]}
    if details.peak_step[t] == mem.peak_step:
        assert at_peak == {c: b for c, b in mem.by_category_at_peak.items() if b}


@pytest.mark.parametrize("name", sorted(CASES))
def test_trace_and_page(compiled: dict[str, dict[str, Any]], name: str) -> None:
    plan = Plan.load(compiled[name]["json"])
    trace = json.loads(Path(compiled[name]["trace.json"]).read_text())
    check_format(trace)
    assert sum(e["ph"] == "X" and e["cat"] == "superstep" for e in trace["traceEvents"]) == \
        len(plan.steps)
    page = Path(compiled[name]["html"]).read_text()
    assert page.count("<tr data-op=") == len(plan.ops)
    assert len(page.encode()) < 3_000_000


def test_annotated_model_from_report_equals_compile(compiled: dict[str, dict[str, Any]],
                                                    tmp_path: Path) -> None:
    """Re-lowering from the saved plan finds every node and writes the same annotations."""
    entry = compiled["gc200"]
    again = tmp_path / "again.onnx"
    code, _ = run(["report", str(entry["json"]), "--onnx", str(again)])
    assert code == 0

    def placements(path: Path) -> dict[str, dict[str, str]]:
        model = onnx.load(str(path), load_external_data=False)
        return {n.name: {p.key: p.value for p in n.metadata_props
                         if p.key.startswith("tilec.placement.")} for n in model.graph.node}

    first, second = placements(entry["onnx"]), placements(again)
    assert first == second
    plan = Plan.load(entry["json"])
    assert {op.name for op in plan.ops} <= {n for n, ann in first.items() if ann}
    meta = {p.key: p.value for p in onnx.load(str(again), load_external_data=False)
            .metadata_props}
    assert "tilec.plan.unmatched_ops" not in meta


@pytest.mark.browser
def test_real_pages_in_chromium(compiled: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    from test_report_browser import _check_page, find_chromium

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium (see test_report_browser.py)")
    for name in ("gc200", "oom"):
        facts = _check_page(chromium, Plan.load(compiled[name]["json"]), tmp_path, name)
        assert facts["rows"] == len(Plan.load(compiled[name]["json"]).ops)
