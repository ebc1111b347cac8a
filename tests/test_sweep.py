"""`tilec sweep`: the grid flags, the result files, the cache, -j independence, plots, the page,
--compare and bad arguments. The sweeps here are RepVGG-A0 at 32-64 px with a batch search capped
at 4 (seconds each); the full YOLOv4-P5 envelope is benchmarks/sweep_time.py's."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tilec.cli import main
from tilec.errors import InputError
from tilec.sweep import Grid, Request, ResultCache, SweepResult, sweep
from tilec.sweep.compare import compare, load
from tilec.sweep.grid import parse_batches, parse_precisions, parse_sizes
from tilec.sweep.page import render
from tilec.sweep.plots import FIGURES, render_plots
from tilec.sweep.result import FRONTIER_COLUMNS, POINT_COLUMNS, read_csv, to_csv
from tilec.sweep.work import Settings

MODEL = "repvgg-a0"
SMALL = Grid(image_sizes=((32, 32), (64, 64)), batches=(1, 2), precisions=("fp16",))
SETTINGS = Settings(cap=4)


def run_small(cache_dir: Path, grid: Grid = SMALL, jobs: int = 1):
    req = Request(model=MODEL, target="gc200", grid=grid, settings=SETTINGS, jobs=jobs)
    return sweep(req, ResultCache(cache_dir))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[SweepResult, Path]:
    cache = tmp_path_factory.mktemp("sweep-cache")
    result, outcome = run_small(cache)
    assert outcome.computed == 6 and outcome.cached == 0 and outcome.lowered == 1
    return result, cache


# ------------------------------------------------------------------------------ the grid
def test_grid_parsing() -> None:
    assert parse_sizes("128:256:64") == ((128, 128), (192, 192), (256, 256))
    assert parse_sizes("640x480,320") == ((320, 320), (640, 480))
    assert parse_batches("1..4,8,2") == (1, 2, 3, 4, 8)
    assert parse_precisions("fp32,fp16", ("fp32", "fp16", "int8"), "x") == ("fp32", "fp16")
    for bad in ("", "0", "a", "64:32", "1:2:3:4", "32,,64"):
        with pytest.raises(InputError, match="--image-size"):
            parse_sizes(bad)
    for bad in ("0", "4..2", "x..3", "1,,2"):
        with pytest.raises(InputError, match="--batch"):
            parse_batches(bad)
    with pytest.raises(InputError, match="does not support 'int8'"):
        parse_precisions("int8", ("fp32", "fp16"), "gc200")


# ------------------------------------------------------------------------------ results
def test_results_are_sorted_and_complete(small) -> None:
    result, _ = small
    keys = [(p["image_h"], p["batch"]) for p in result.points]
    assert keys == [(32, 1), (32, 2), (64, 1), (64, 2)]
    assert [f["image_h"] for f in result.frontier] == [32, 64]
    for p in result.points:
        assert p["status"] in ("fits", "does_not_fit", "unknown")
        if p["status"] == "fits":
            assert p["latency_ms"] > 0 and p["throughput_per_s"] > 0 and p["peak_bytes"] > 0
            # throughput is images per second at this batch
            assert p["throughput_per_s"] == pytest.approx(1e3 * p["batch"] / p["latency_ms"])
    for f in result.frontier:
        assert 0 <= f["max_batch"] <= f["cap"] == 4
        assert f["status"] in ("exact", "bound", "unknown")
        assert f["probes"][0]["value"] == 1
        # the answer agrees with the grid: a batch on the grid that fits is <= the answer
        fit = [p["batch"] for p in result.points if p["image_h"] == f["image_h"]
               and p["status"] == "fits"]
        assert all(b <= f["max_batch"] for b in fit)


def test_csv_round_trips(small) -> None:
    result, _ = small
    for rows, cols in ((result.points, POINT_COLUMNS), (result.frontier, FRONTIER_COLUMNS)):
        text = to_csv(rows, cols)
        back = read_csv(text)
        assert back == [{c: r[c] for c in cols} for r in rows]
        assert to_csv(back, cols) == text


def test_json_round_trips_and_matches_schema(small) -> None:
    import jsonschema

    result, _ = small
    data = json.loads(result.to_json())
    schema = json.loads((Path(__file__).parents[1] / "tilec" / "report" /
                         "sweep.schema.json").read_text())
    jsonschema.validate(data, schema)
    assert SweepResult.from_dict(data).to_json() == result.to_json()
    with pytest.raises(ValueError, match="version"):
        SweepResult.from_dict({**data, "version": 99})


def test_rerun_computes_nothing_and_extension_only_the_new(small) -> None:
    result, cache = small
    again, outcome = run_small(cache)
    assert (outcome.computed, outcome.cached, outcome.lowered) == (0, 6, 0)
    assert again.to_json() == result.to_json()
    wider = Grid(image_sizes=((32, 32), (64, 64), (96, 96)), batches=(1, 2),
                 precisions=("fp16",))
    more, outcome = run_small(cache, wider)
    assert (outcome.computed, outcome.cached) == (3, 6)  # 96 px: two points and a search
    assert more.points[:4] == result.points[:2] + result.points[2:4]


def test_jobs_do_not_change_the_csv(tmp_path) -> None:
    outs = []
    for jobs in (1, 2):
        out = tmp_path / f"j{jobs}"
        code = main(["sweep", MODEL, "--image-size", "32,64", "--batch", "1,2", "-p", "fp16",
                     "--batch-cap", "4", "-j", str(jobs), "--out", str(out), "--cache",
                     str(tmp_path / f"cache{jobs}"), "-q"])
        assert code == 0
        outs.append(out)
    for name in ("points.csv", "frontier.csv", "sweep.json", "frontier.svg"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name


# ------------------------------------------------------------------------ plots and page
def test_plots_drawn_and_labelled(small) -> None:
    import matplotlib.image as mpimg
    import numpy as np

    result, _ = small
    for name, make in FIGURES.items():
        fig = make(result, None)
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel(), name
            assert ax.lines, f"{name}: nothing drawn"
        if name == "latency_vs_size":
            assert fig.axes[0].get_yscale() == "log"
    rendered = render_plots(result)
    assert set(rendered) == {"frontier", "latency_vs_size", "batch"}
    for name, (png, svg) in rendered.items():
        img = mpimg.imread(io.BytesIO(png))
        ink = (img[..., :3].mean(axis=2) < 0.6).mean()
        assert 0.005 < ink < 0.5, f"{name}: {ink:.3f} of the pixels drawn"
        assert len(np.unique(img[..., 0])) > 10, f"{name}: blank"
        assert "<svg" in svg and "Date" not in svg


def test_frontier_plot_draws_the_answers(small) -> None:
    result, _ = small
    ax = FIGURES["frontier"](result, None).axes[0]
    ys = {tuple(line.get_ydata()) for line in ax.lines}
    assert tuple(float(f["max_batch"]) for f in result.frontier) in {
        tuple(map(float, y)) for y in ys}


def test_page_is_self_contained(small) -> None:
    result, _ = small
    page = render(result, render_plots(result))
    assert page.count("<svg") == 3
    low = page.lower()
    for needle in ("<script", "<link", "src=", "@import", "url(http"):
        assert needle not in low, needle
    assert "fit frontier" in low and "every configuration" in low


# ---------------------------------------------------------------------------- --compare
def test_compare_matches_points(small, tmp_path) -> None:
    result, _ = small
    f = tmp_path / "m.toml"
    f.write_text('[[point]]\nimage_size = 32\nbatch = 1\nprecision = "fp16"\nresult = "fits"\n'
                 'latency_ms = 0.5\n\n[[point]]\nimage_size = 640\nbatch = 1\n'
                 'precision = "fp16"\nresult = "oom"\n')
    rows = compare(load(f), result.points, result.frontier)
    assert len(rows) == 2
    hit = next(r for r in rows if r["image_h"] == 32)
    pred = result.points[0]
    assert hit["predicted"] == pred["status"]
    if pred["latency_ms"] is not None:
        assert hit["error_pct"] == pytest.approx(100 * (pred["latency_ms"] - 0.5) / 0.5)
    assert next(r for r in rows if r["image_h"] == 640)["predicted"] is None
    # off the grid: a batch the search decided is predicted from its probe
    front = result.frontier[0]
    probe = next(pr for pr in reversed(front["probes"]) if pr["by"] == "plan")
    f.write_text(f'[[point]]\nimage_size = {front["image_h"]}\nbatch = {probe["value"]}\n'
                 f'precision = "fp16"\nresult = "fits"\n')
    (row,) = compare(load(f), [], result.frontier)
    assert (row["predicted"], row["source"]) == (probe["result"], "search")
    assert row["agree"] == (None if probe["result"] == "unknown" else probe["result"] == "fits")


def test_compare_reads_the_calibration_file() -> None:
    path = Path("/work/shared/calibration/gc200-scaled-yolov4-p5.toml")
    if not path.exists():
        pytest.skip("the shared calibration file is not on this machine")
    pts = load(path)
    assert any(p.image_size == (896, 896) and p.latency_ms == 6.56 for p in pts)
    assert any(p.result == "does_not_fit" for p in pts)


# ------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("argv, needle", [
    (["--batch", "0"], "--batch"),
    (["--batch", "4..2"], "--batch"),
    (["--image-size", "64:32"], "--image-size"),
    (["--image-size", "33"], "stride"),
    (["-p", "fp8"], "--precision"),
    (["--batch-cap", "0"], "--batch-cap"),
    (["--compare", "/nonexistent/m.toml"], "m.toml"),
    (["--ray", "local", "-j", "2"], "--ray"),
    (["--out", "/nonexistent/dir/x"], "--out"),
])
def test_bad_arguments_exit_2_with_one_line(argv, needle, capsys, tmp_path) -> None:
    code = main(["sweep", MODEL, "--cache", str(tmp_path), "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and needle in err, err


def test_bad_compare_file_exits_2(tmp_path, capsys) -> None:
    f = tmp_path / "bad.toml"
    f.write_text('[[point]]\nimage_size = 32\nprecision = "fp16"\nresult = "fits"\n')
    code = main(["sweep", MODEL, "--image-size", "32", "--compare", str(f), "--cache",
                 str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "bad.toml: point 1: missing field 'batch'" in err


def test_no_image_input_default_needs_a_size(tmp_path, capsys) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"")
    code = main(["sweep", str(onnx), "--out", str(tmp_path / "o")])
    assert code == 2 and "--image-size: required" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- Ray
def test_ray_missing_is_one_line(monkeypatch, tmp_path, capsys) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = main(["sweep", MODEL, "--image-size", "32", "--ray", "local", "--out",
                 str(tmp_path / "o"), "--cache", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == ("tilec: error: --ray: Ray is not installed "
                                 "(pip install 'tilec[ray]')")


@pytest.mark.slow
def test_ray_local_gives_the_same_csv(tmp_path) -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.skip("Ray is not installed (pip install 'tilec[ray]'): --ray is not tested")
    outs = []
    for extra in (["-j", "1"], ["--ray", "local"]):
        out = tmp_path / extra[-1]
        code = main(["sweep", MODEL, "--image-size", "32,64", "--batch", "1,2", "-p", "fp16",
                     "--batch-cap", "4", "--no-cache", "--out", str(out), "-q", *extra])
        assert code == 0
        outs.append(out)
    for name in ("points.csv", "frontier.csv", "sweep.json"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name


def test_cli_compare_prints_and_overlays(small, tmp_path, capsys) -> None:
    """From the cache (nothing computed): the table, the comparison, the overlay on the plots."""
    result, cache = small
    pred = result.points[0]  # 32 px, batch 1
    f = tmp_path / "m.toml"
    f.write_text('[[point]]\nimage_size = 32\nbatch = 1\nprecision = "fp16"\nresult = "fits"\n'
                 'latency_ms = 0.25\n')
    out = tmp_path / "o"
    code = main(["sweep", MODEL, "--image-size", "32,64", "--batch", "1,2", "-p", "fp16",
                 "--batch-cap", "4", "--cache", str(cache), "--out", str(out), "--compare",
                 str(f)])
    text = capsys.readouterr().out
    assert code == 0
    assert "0 configurations computed, 6 from the cache" in text
    assert "predicted vs measured" in text
    if pred["latency_ms"] is not None:
        err = 100 * (pred["latency_ms"] - 0.25) / 0.25
        assert f"{err:+.1f} %" in text
    assert "measured (fits)" in (out / "latency_vs_size.svg").read_text()
    assert "Predicted vs measured" in (out / "sweep.html").read_text()
    assert (out / "points.csv").read_text() == to_csv(result.points, POINT_COLUMNS)


def test_a_bug_at_one_configuration_loses_none_of_the_others(tmp_path, monkeypatch,
                                                             capsys) -> None:
    """An unexpected exception while planning one configuration is recorded there ('error',
    with the message), not cached; every other result is computed and written, and the sweep
    exits 3 naming the configuration."""
    from tilec.sweep import work

    real = work.plan_point

    def flaky(lowered, task):
        if task.image_size == (64, 64) and int(lowered.info.meta["batch"]) == 2:
            raise ZeroDivisionError("planted")
        return real(lowered, task)

    monkeypatch.setattr(work, "plan_point", flaky)
    out = tmp_path / "o"
    argv = ["sweep", MODEL, "--image-size", "32,64", "--batch", "1,2", "-p", "fp16",
            "--batch-cap", "4", "-j", "1", "--out", str(out), "--cache", str(tmp_path / "c"),
            "-q"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 3
    assert "internal error at 1 configuration" in err and "64x64 fp16 batch 2" in err
    assert "ZeroDivisionError: planted" in err
    rows = read_csv((out / "points.csv").read_text())
    status = {(int(r["image_h"]), int(r["batch"])): r["status"] for r in rows}
    assert status[(64, 2)] == "error"
    assert all(s != "error" for k, s in status.items() if k != (64, 2))
    assert (out / "sweep.html").is_file() and (out / "frontier.csv").is_file()
    import jsonschema

    schema = json.loads((Path(__file__).parents[1] / "tilec" / "report" /
                         "sweep.schema.json").read_text())
    jsonschema.validate(json.loads((out / "sweep.json").read_text()), schema)
    # the failure was not cached: with the bug gone, only that configuration is computed
    monkeypatch.setattr(work, "plan_point", real)
    assert main(argv[:-1]) == 0
    assert "1 configurations computed, 5 from the cache" in capsys.readouterr().out
