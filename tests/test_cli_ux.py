"""First-time-user regressions: flag values, output paths and files tilec cannot read or write.

Every case is a mistake a user makes on day one; each must end in ONE line naming the flag, file
or field and exit code 2 -- before any compile work where the command line already shows it.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from report_fixtures import does_not_fit_plan

from tilec.cli import main

GOOD = Path(__file__).parent / "data" / "good" / "tiny_cnn.onnx"


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tilec: error: "), err
    assert "Traceback" not in err and "internal error" not in err
    return lines[0]


@pytest.fixture()
def saved_plan(tmp_path: Path) -> Path:
    path = tmp_path / "plan.json"
    does_not_fit_plan().save(path)
    return path


# ------------------------------------------------------------------------------ output paths
def _output_cases(bad: str, plan: Path) -> list[list[object]]:
    """Every flag that names a file tilec writes, pointed at ``bad``."""
    return [
        ["compile", GOOD, "--json", bad], ["compile", GOOD, "--html", bad],
        ["compile", GOOD, "--trace", bad], ["compile", GOOD, "--onnx", bad],
        ["report", plan, "--html", bad], ["report", plan, "--trace", bad],
        ["report", plan, "--onnx", bad],
        ["inspect", GOOD, "--json", bad],
        ["lower", GOOD, "-o", bad], ["lower", GOOD, "-o", plan.parent / "x.onnx", "--json", bad],
        ["zoo", "list", "--json", bad], ["zoo", "export", "resnet50", "-o", bad],
        ["layout", plan, "-c", "10", "-o", bad],
    ]


@pytest.mark.parametrize("where", ["missing_dir", "is_dir", "parent_is_file"])
def test_unwritable_outputs_are_usage_errors_before_any_work(
        tmp_path: Path, saved_plan: Path, capsys: pytest.CaptureFixture[str], where: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing directory, a directory, or a file used as a directory: exit 2, one line naming
    the path, and nothing was compiled (argparse rejects it; compile_model is never called)."""
    import tilec.compile

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("compiled although the output path was bad")

    monkeypatch.setattr(tilec.compile, "compile_model", boom)
    bad = {"missing_dir": tmp_path / "no" / "such" / "x.json",
           "is_dir": tmp_path,
           "parent_is_file": saved_plan / "x.json"}[where]
    for argv in _output_cases(str(bad), saved_plan):
        code, out, err = run(capsys, *argv)
        line = one_error_line(err)
        assert code == 2, argv
        assert str(bad) in line, line
        assert out == "", argv


def test_write_failure_after_the_check_is_one_line_exit_2(
        saved_plan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk that fills up (or a path made unwritable) while tilec works: not an internal
    error but one line naming the file."""
    import tilec.report.html

    target = tmp_path / "r.html"

    def full_disk(_plan: object, path: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(tilec.report.html, "write_html", full_disk)
    code, _out, err = run(capsys, "report", saved_plan, "--html", target)
    assert code == 2
    assert one_error_line(err) == f"tilec: error: {target}: No space left on device"


def test_an_oserror_without_a_file_is_still_an_internal_error(
        saved_plan: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tilec.report.terminal

    def broken(*_a: object, **_k: object) -> None:
        raise OSError("socket went away")

    monkeypatch.setattr(tilec.report.terminal, "print_plan", broken)
    code, _out, err = run(capsys, "report", saved_plan)
    assert code == 3 and "internal error: OSError: socket went away" in err


# ------------------------------------------------------------------------------ flag values
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_time_limit_must_be_finite(capsys: pytest.CaptureFixture[str], value: str) -> None:
    for cmd in (["compile", GOOD], ["layout", GOOD, "-c", "10"]):
        code, out, err = run(capsys, *cmd, f"--time-limit={value}")
        assert code == 2 and out == ""
        assert f"argument --time-limit: must be a finite number, got {value}" in one_error_line(err)


def test_precision_map_that_is_a_directory(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "compile", GOOD, "--precision-map", tmp_path, "-q")
    assert code == 2
    assert one_error_line(err) == (f"tilec: error: {tmp_path}: is a directory, not a "
                                   "precision-map file (--precision-map)")


# ------------------------------------------------------------------------------ --input-shape
@pytest.mark.parametrize("text", ["1,3,64,64,x", "1,,3,64", "1,3,64,", "1,3,64,64,,"])
def test_input_shape_typos_are_not_skipped(text: str) -> None:
    """A stray separator used to be dropped, so `1,3,64,64,x` compiled as 1,3,64,64 -- a typo
    silently accepted. Both front doors refuse it now."""
    from tilec.capture.fx import parse_input_shape
    from tilec.capture.onnx_file import parse_input_shapes
    from tilec.errors import InputError

    for parse in (parse_input_shape, parse_input_shapes):
        with pytest.raises(InputError, match="is not a shape"):
            parse(text)


@pytest.mark.parametrize("text", ["1,3,64,64", "1x3x64x64", " 1, 3 ,64, 64 ", "1×3×64×64"])
def test_input_shape_spellings_still_accepted(text: str) -> None:
    from tilec.capture.fx import parse_input_shape
    from tilec.capture.onnx_file import parse_input_shapes

    assert parse_input_shape(text) == (1, 3, 64, 64)
    assert parse_input_shapes(text) == {None: (1, 3, 64, 64)}
    assert parse_input_shapes("a=1,3,64,64; b = 1x10") == {"a": (1, 3, 64, 64), "b": (1, 10)}


def test_named_input_shapes_for_a_module_say_why(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "net.py"
    src.write_text("import torch\ndef make():\n    return torch.nn.Conv2d(3, 4, 3)\n")
    code, _out, err = run(capsys, "inspect", f"{src}:make", "--input-shape", "x=1,3,8,8;y=1,2")
    assert code == 2
    # Names are forward()'s parameters (Conv2d.forward(input)); a wrong one is named, with them.
    line = one_error_line(err)
    assert f"{src}:make: --input-shape names 'x', but forward(input) has no such parameter" in line


# ------------------------------------------------------------------------------ input files
def test_target_file_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "chip.toml"
    path.write_bytes(b'[target]\nname = "caf\xe9"\n')  # Latin-1: was an internal error
    code, _out, err = run(capsys, "targets", "show", path)
    assert code == 2
    assert one_error_line(err) == (f"tilec: error: {path}: not a UTF-8 text file (byte 20: "
                                   "b'\\xe9'); TOML must be UTF-8")


@pytest.mark.parametrize(("content", "message"), [
    (b"id,lower,upper,size\n\xe9,0,2,5\n", "not a UTF-8 text file (byte 20)"),
    (b"id,lower,upper,size\na,0,2,99999999999999999999\n",
     ":2: upper and size must be at most 4,611,686,018,427,387,904"),
])
def test_layout_csv_bad_bytes_and_huge_values(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              content: bytes, message: str) -> None:
    path = tmp_path / "b.csv"
    path.write_bytes(content)
    code, _out, err = run(capsys, "layout", path, "-c", "100")
    assert code == 2 and message in one_error_line(err)


def test_layout_capacity_beyond_the_solver(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "b.csv"
    path.write_text("id,lower,upper,size\na,0,2,5\n")
    code, _out, err = run(capsys, "layout", path, "-c", str(2**70))
    assert code == 2 and "--capacity: at most" in one_error_line(err)


def test_layout_csv_round_trips_quoted_ids_and_a_bom(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A spreadsheet writes a byte-order mark and quotes an id with a comma; the output must be
    CSV that reads back to the same ids (it printed `a,b,0,2,5,0`: six fields)."""
    import csv

    path = tmp_path / "b.csv"
    path.write_bytes('\ufeffid,lower,upper,size\n"a,b",0,2,5\nc,1,3,5\n'.encode())
    code, out, err = run(capsys, "layout", path, "-c", "100")
    assert code == 0 and "fits: 2 buffers" in err
    rows = list(csv.reader(out.splitlines()))
    assert rows[0] == ["id", "lower", "upper", "size", "offset"]
    assert [r[0] for r in rows[1:]] == ["a,b", "c"] and all(len(r) == 5 for r in rows)
    written = tmp_path / "o.csv"
    assert run(capsys, "layout", path, "-c", "100", "-o", written)[0] == 0
    assert written.read_text() == out


# ------------------------------------------------------------------------------ saved plans
def _edited(path: Path, edit: object) -> Path:
    import json

    data = json.loads(path.read_text())
    edit(data)  # type: ignore[operator]
    out = path.with_name("edited.json")
    out.write_text(json.dumps(data))
    return out


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.__setitem__("status", "maybe"),
     "status: 'maybe' is not one of fits, does_not_fit, unknown"),  # was exit 1, silently
    (lambda d: d["model"].__setitem__("image_size", [1]),
     "model.image_size: expected [H, W]"),  # was an internal error (IndexError)
    (lambda d: d["target"].__setitem__("grid", [16]), "target.grid: expected [rows, cols]"),
    (lambda d: d["target"].__setitem__("budget_per_tile", 0),
     "target.budget_per_tile: must be positive"),
    (lambda d: d["buffers"][0].__setitem__("bytes", -5), "buffers[0].bytes: must be >= 0"),
])
def test_report_refuses_what_it_cannot_render_truthfully(
        saved_plan: Path, capsys: pytest.CaptureFixture[str], edit: object, message: str) -> None:
    path = _edited(saved_plan, edit)
    code, out, err = run(capsys, "report", path)
    assert code == 2 and out == ""
    assert message in one_error_line(err)


def test_report_refuses_nan_and_negative_latency(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from report_fixtures import gc200_plan

    path = tmp_path / "p.json"
    gc200_plan().save(path)
    for bad in ("NaN", "-1.0"):  # Python's json reads NaN; a hand edit can write it
        text = path.read_text()
        edited = tmp_path / "e.json"
        import re

        edited.write_text(re.sub(r'"seconds": [0-9.e+-]+', f'"seconds": {bad}', text, count=1))
        code, _out, err = run(capsys, "report", edited)
        assert code == 2 and "must be a finite number >= 0" in one_error_line(err)


def test_report_deeply_nested_json_and_a_bom(saved_plan: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)  # was RecursionError: an internal error
    code, _out, err = run(capsys, "report", deep)
    assert code == 2 and "nested too deeply" in one_error_line(err)
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + saved_plan.read_bytes())
    assert run(capsys, "report", bom)[0] == 1  # the does-not-fit plan, read despite the BOM


def test_piped_output_has_no_trailing_blanks(saved_plan: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """rich pads every table cell to its column; in a pipe or a file that left lines ending in
    dozens of blanks (diffs and copy-paste suffered)."""
    for argv in (["zoo", "list"], ["targets"], ["passes"], ["inspect", GOOD],
                 ["report", saved_plan, "-v"]):
        code, out, _err = run(capsys, *argv)
        assert code in (0, 1) and out.strip(), argv
        assert not [line for line in out.splitlines() if line != line.rstrip()], argv


# ------------------------------------------------------------------------------ user models
def test_mod_in_exporter_constant_arithmetic_is_folded(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """torch.onnx exports nn.TransformerEncoderLayer with a Mod of two constants (its
    head-dimension arithmetic); it was refused as an op tilec cannot plan. On constants it
    folds like Shape or Range; on a run-time tensor it is still refused."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def model(mod_inputs: list[str]) -> Path:
        nodes = [  # as in the export: Mod of constants, reshaped, then used by a planned op
            helper.make_node("Mod", mod_inputs, ["m"], name="mod"),
            helper.make_node("Reshape", ["m", "one"], ["r"], name="reshape"),
            helper.make_node("Add", ["x", "r"], ["y"], name="add"),
        ] if mod_inputs[0] != "x" else [helper.make_node("Mod", mod_inputs, ["y"], name="mod")]
        graph = helper.make_graph(
            nodes, "mod", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(np.array([8.0], dtype=np.float32), "eight"),
             numpy_helper.from_array(np.array([3.0], dtype=np.float32), "three"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "one")])
        path = tmp_path / f"mod{len(list(tmp_path.iterdir()))}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        return path

    nodes_mod = ["eight", "three"]
    code, out, err = run(capsys, "inspect", model(nodes_mod))
    assert (code, err) == (0, ""), err
    ops_line = next(line for line in out.splitlines() if line.startswith("ops"))
    assert "Mod" not in ops_line and "Add 1" in ops_line  # folded, not planned
    code, _out, err = run(capsys, "inspect", model(["x", "three"]))  # on the input: refused
    assert code == 2 and "handles Mod only as constant arithmetic" in one_error_line(err)


# ------------------------------------------------------------------------------ precision map
def test_precision_map_applies_at_a_float_default_precision(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """gc200 compiles at fp16 by default, whose pipeline has no quantize pass: a precision map
    was read, checked -- and then silently ignored (weights stayed 16-bit)."""
    import json

    pmap = tmp_path / "map.toml"
    pmap.write_text('default = "int8"\n')
    sizes = {}
    for name, extra in (("plain", []), ("mapped", ["--precision-map", pmap])):
        out = tmp_path / f"{name}.json"
        code, _out, err = run(capsys, "compile", GOOD, "-q", "--no-what-if", "--json", out, *extra)
        assert code == 0, err
        plan = json.loads(out.read_text())
        sizes[name] = plan["model"]["weight_bytes"]
        assert ("quantize" in plan["model"]["passes"]) == (name == "mapped")
    assert sizes["mapped"] < sizes["plain"] * 0.6  # int8 weights (plus scales), not fp16
    # a typo in a glob is caught now that the map is read by the pass
    pmap.write_text('[layers]\n"nomatch*" = "int8"\n')
    code, _out, err = run(capsys, "compile", GOOD, "-q", "--no-what-if", "--precision-map", pmap)
    assert code == 2 and "matches no layer" in one_error_line(err)
    # explicit passes without quantize: say so instead of ignoring the map
    code, _out, err = run(capsys, "compile", GOOD, "-q", "--precision-map", pmap,
                          "--passes", "canonicalize")
    assert code == 2 and "applied by the quantize pass" in one_error_line(err)


def test_reshape_fixed_by_the_export_is_caught_at_capture(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Reshape whose constant target was traced at batch 1: under --batch 2 shape inference
    took the target as it was, capture passed, and the planner planned half the network (only
    onnxruntime, if verification ran, refused it, with a 600-character message)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def model(target: list[int], name: str) -> Path:
        nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"], name="flatten"),
                 helper.make_node("Relu", ["r"], ["y"], name="relu")]
        graph = helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(np.array(target, dtype=np.int64), "shape")])
        path = tmp_path / name
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        return path

    fixed = model([1, 256], "fixed.onnx")
    assert run(capsys, "inspect", fixed, "--batch", "1")[0] == 0
    code, _out, err = run(capsys, "inspect", fixed, "--batch", "2")
    assert code == 2
    line = one_error_line(err)
    assert "node 'flatten' (Reshape) cannot reshape 'x' (2x4x8x8, 512 elements) to 1x256" in line
    assert "export the model with dynamic axes" in line
    for good in ([0, -1], [-1, 256], [0, 4, 64]):  # copies and inferred dims follow the batch
        assert run(capsys, "inspect", model(good, "good.onnx"), "--batch", "2")[0] == 0, good


def test_a_batch_the_export_fixed_follows_batch_when_the_file_says_which(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A static export (batch 1 declared on the input, as PyTorch's default exporter writes
    without dynamic_shapes) with ``x.flatten(1)`` as a Reshape to the constant [1, 256]: under
    --batch 2 the target's leading 1 is the batch, and it follows (with a note). A target whose
    leading dim is not the exported batch, or whose other dims do not match, stays an error."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def model(target: list[int], name: str) -> Path:
        w = np.random.default_rng(0).standard_normal((10, 256)).astype(np.float32)
        nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"),
                 helper.make_node("Reshape", ["a", "shape"], ["r"], name="flatten"),
                 helper.make_node("Gemm", ["r", "w"], ["y"], name="fc", transB=1)]
        graph = helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
            [numpy_helper.from_array(np.array(target, dtype=np.int64), "shape"),
             numpy_helper.from_array(w, "w")])
        path = tmp_path / name
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        return path

    code, out, err = run(capsys, "compile", model([1, 256], "static.onnx"), "--batch", "3",
                         "--no-what-if", "--band", "off")
    assert code == 0, err
    assert "1 Reshape target the export fixed at its own batch follow --batch" in out
    assert "FITS" in out and "batch 3" in out
    code, _out, err = run(capsys, "inspect", model([2, 128], "odd.onnx"), "--batch", "3")
    assert code == 2 and "odd.onnx: node 'fc' (Gemm)" in err  # [3, 128]? no: not the batch


def test_onnxruntime_errors_are_cut_to_the_sentence_that_matters() -> None:
    from tilec.passes._verify import ort_reason

    raw = ("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Reshape "
           "node. Name:'/attn/Reshape_4' Status Message: /onnxruntime_src/onnxruntime/core/"
           "providers/cpu/tensor/reshape_helper.h:91 onnxruntime::ReshapeHelper::ReshapeHelper("
           "const onnxruntime::TensorShape&, bool) input_shape_size == requested_shape_size was "
           "false. The input tensor cannot be reshaped to the requested shape. Input shape:"
           "{10,4,64}, requested shape:{10,4,16}")
    assert ort_reason(RuntimeError(raw)) == (
        "node '/attn/Reshape_4' (Reshape): The input tensor cannot be reshaped to the requested "
        "shape. Input shape:{10,4,64}, requested shape:{10,4,16}")
    assert ort_reason(RuntimeError("no\nnode here")) == "no node here"


def test_progress_names_the_lowering_stage() -> None:
    """The spinner said "capturing ..." through the passes and their onnxruntime proof (most of
    a zoo compile's time) until the planner's first stage."""
    from tilec.compile import CompileOptions, compile_model

    stages: list[str] = []
    compile_model(str(GOOD), "gc200", CompileOptions(
        what_if=False, progress=lambda stage, fraction=None: stages.append(stage)))
    assert "lowering" in stages
    assert stages.index("lowering") < min(i for i, s in enumerate(stages) if s != "lowering")


def test_report_refuses_fits_without_a_passed_verification(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A hand-edited plan said FITS ("placement NOT verified") with exit code 0."""
    from report_fixtures import gc200_plan

    path = tmp_path / "p.json"
    gc200_plan().save(path)
    assert run(capsys, "report", path)[0] == 0
    for edit in (lambda d: d.__setitem__("verification", None),
                 lambda d: d["verification"].__setitem__("ok", False)):
        code, out, err = run(capsys, "report", _edited(path, edit))
        assert code == 2 and out == ""
        assert "status: 'fits' without a verification that passed" in one_error_line(err)
