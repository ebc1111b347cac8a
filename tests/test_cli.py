"""The CLI's shape: sub-commands, help, usage errors (exit 2, one line), inspect, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tilec import __version__
from tilec.cli import COMMANDS, main

GOOD = Path(__file__).parent / "data" / "good" / "tiny_cnn.onnx"
BAD = Path(__file__).parent / "data" / "bad"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for name in COMMANDS:
        assert f"    {name} " in out
    assert "Exit codes: 0 fits" in out
    assert set(COMMANDS) >= {"compile", "inspect", "targets", "passes", "lower", "zoo", "report"}


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert (code, out.strip()) == (0, f"tilec {__version__}")


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 2 and out == "" and "usage: tilec" in err


def test_compile_help_reads_well(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "compile", "--help")
    assert code == 0
    for flag in ("MODEL", "--target", "--batch N", "--image-size S|HxW", "--precision",
                 "--json FILE", "--time-limit S", "--quiet", "--debug", "--input-shape"):
        assert flag in out, flag
    assert "built-in" in out


@pytest.mark.parametrize(("argv", "fragment"), [
    (["nosuchcommand"], "argument COMMAND: invalid choice: 'nosuchcommand'"),
    (["inspect"], "the following arguments are required: MODEL"),
    (["inspect", GOOD, "--batch", "0"], "argument --batch/-b: must be a positive integer, got 0"),
    (["inspect", GOOD, "--batch", "-3"], "must be a positive integer, got -3"),
    (["inspect", GOOD, "-b", "two"], "argument --batch/-b: 'two' is not an integer"),
    (["inspect", GOOD, "--image-size", "abc"], "argument --image-size/-s: 'abc' is not a size"),
    (["inspect", GOOD, "--image-size", "0"], "argument --image-size/-s: must be positive, got 0"),
    (["inspect", GOOD, "--image-size", "640x"], "'640x' is not a size"),
    (["inspect", GOOD, "--image-size", "1x2x3"], "'1x2x3' is not a size"),
    (["inspect", GOOD, "--top", "0"], "argument --top: must be a positive integer, got 0"),
    (["inspect", GOOD, "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["compile", GOOD, "--time-limit", "-1"], "argument --time-limit: must be positive, got -1"),
])
def test_usage_errors_are_one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list,
                                          fragment: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tilec: error: ")
    assert fragment in lines[0]
    assert "--help`)" in lines[0]


def test_debug_shows_the_traceback_either_side_of_the_command(
        capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--debug", "inspect", BAD / "cycle.onnx"],
                 ["inspect", BAD / "cycle.onnx", "--debug"]):
        code, _, err = run(capsys, *argv)
        assert code == 2
        assert "Traceback (most recent call last)" in err
        assert err.strip().splitlines()[-1].startswith("tilec: error: ")


def test_internal_error_is_exit_3_and_one_line(capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import tilec.capture

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(tilec.capture, "capture", broken)
    code, _, err = run(capsys, "inspect", GOOD)
    assert code == 3
    assert err.splitlines() == ["tilec: internal error: RuntimeError: boom second line (rerun "
                                "with --debug for the traceback)"]


def test_inspect_prints_a_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_json = tmp_path / "summary.json"
    code, out, err = run(capsys, "inspect", GOOD, "--batch", "2", "--image-size", "64",
                         "--json", out_json, "--top", "3")
    assert (code, err) == (0, "")
    assert "tiny_cnn" in out and "(opset 17)" in out
    assert "images 2x3x64x64 float32" in out
    assert "outputs     out 2x8x16x16" in out
    assert "ops         4: Conv 2, Relu 2" in out
    assert "parameters  792 (3.1 KiB as stored, float32)" in out  # 8*3*9 + 8*8*9
    assert "3 largest activations" in out
    data = json.loads(out_json.read_text())
    assert data["params"] == 8 * 3 * 9 + 8 * 8 * 9
    assert data["weight_bytes"] == 4 * data["params"]
    # MACs: conv1 2x8x32x32 outputs x 3*9, conv2 2x8x16x16 outputs x 8*9.
    assert data["macs"] == 2 * 8 * 32 * 32 * 27 + 2 * 8 * 16 * 16 * 72
    assert data["op_counts"] == {"Conv": 2, "Relu": 2}
    assert [t["name"] for t in data["largest_tensors"]] == ["images", "c1", "r1"]
    assert data["inputs"] == {"images": {"shape": [2, 3, 64, 64], "dtype": "float32"}}


def test_inspect_a_model_without_image_input(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "inspect", BAD / "no_4d_input.onnx", "--batch", "5")
    assert (code, err) == (0, "")
    assert "x 5x16 float32" in out
    assert "MACs        640 per inference at batch 5" in out  # 5 x 8 outputs x 16


def test_inspect_json_to_an_unwritable_place(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    code, _, err = run(capsys, "inspect", GOOD, "--json", tmp_path / "no" / "dir" / "x.json")
    assert code == 2
    assert err.startswith("tilec: error: argument --json: cannot write")
    assert "directory" in err and "does not exist" in err


def test_compile_hands_the_captured_graph_to_the_planner(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tilec compile MODEL.onnx --target gc200 --batch 2`: capture applies the batch, lowering
    runs, and the planner entry point receives the graph (whatever the planner then does)."""
    import tilec.plan
    from tilec.compile import CompileOptions, compile_model

    class Reached(Exception):
        pass

    seen = {}

    def planner(info, target, **kwargs):
        seen.update(info=info, target=target)
        raise Reached

    monkeypatch.setattr(tilec.plan, "plan_model", planner, raising=False)
    with pytest.raises(Reached):
        compile_model(str(GOOD), "gc200", CompileOptions(batch=2))
    info = seen["info"]
    assert seen["target"].name == "gc200"
    assert info.tensors["images"].shape == (2, 3, 32, 32)
    assert info.meta["batch"] == 2 and info.meta["input_shapes"] == {"images": [2, 3, 32, 32]}
    assert all(shape[0] == 2 for op in info.ops for shape in op.out_shapes)


def test_folding_path_prints_nothing_extra(capfd: pytest.CaptureFixture[str]) -> None:
    """Capture of an exporter's Shape arithmetic runs onnxruntime (to fold) and graphsurgeon;
    neither may write to the terminal (checked at the file-descriptor level)."""
    code = main(["inspect", str(GOOD.parent / "torch_flatten.onnx"), "--batch", "2"])
    out, err = capfd.readouterr()
    assert (code, err) == (0, "")
    assert "ops         4: Conv 1, Gemm 1, Relu 1, Reshape 1" in out
    assert "logits 2x10" in out


def test_what_if_reshape_keeps_a_1d_input(tmp_path: Path) -> None:
    """The what-if re-shapes the lowered graph for another batch with the capture rule: dimension
    0 of inputs of rank 2 or more. A 1-D input (a per-channel scale) keeps its length (it used to
    be set to the batch, and the re-shaped graph then failed or planned the wrong sizes)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from tilec.targets import load_target

    from tilec.capture import capture
    from tilec.compile import CompileOptions, lower, reshaped

    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Unsqueeze", ["scale", "axes"], ["s"], name="unsq"),
         helper.make_node("Mul", ["c", "s"], ["y"], name="mul")],
        "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
                helper.make_tensor_value_info("scale", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w, numpy_helper.from_array(np.array([1, 2], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "two.onnx"
    onnx.save(model, str(path))
    target = load_target("gc200")
    lowered = lower(capture(str(path)), target, CompileOptions(verify="off"))
    again = reshaped(lowered, 3, None)
    assert again is not None
    assert again.captured.input_shapes == {"x": (3, 3, 8, 8), "scale": (4,)}


def test_compile_verify_option(capsys) -> None:
    """``--verify off`` skips the passes' onnxruntime proof (the error message of a model
    onnxruntime cannot run points to it) and still plans; a wrong value is a usage error."""
    assert main(["compile", str(GOOD), "--target", "gc200", "--verify", "off",
                 "--band", "off"]) == 0
    assert "FITS" in capsys.readouterr().out
    assert main(["compile", str(GOOD), "--target", "gc200", "--verify", "never"]) == 2
    assert "--verify: invalid choice: 'never'" in capsys.readouterr().err
