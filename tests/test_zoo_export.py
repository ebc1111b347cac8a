"""Zoo export: every model exports, captures and computes what PyTorch computes; the cache; the CLI.

The cache points at a temporary directory (``TILEC_CACHE_DIR``) for the whole module. Built models
are shared between the PyTorch reference and the exporter through a test-local cache of
``ZooSpec.build`` (the library itself never keeps models alive).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tilec import zoo
from tilec.capture import capture
from tilec.errors import InputError
from tilec.opinfo import build_graph_info
from tilec.zoo import cache as zoo_cache
from tilec.zoo.registry import ZooSpec


@pytest.fixture(scope="module", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("tilec-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TILEC_CACHE_DIR", str(path))
        built: dict[tuple, object] = {}
        original = ZooSpec.build

        def cached_build(self: ZooSpec, *, weights: bool = True, device: str | None = None):
            key = (self.name, weights, device)
            if device is not None:
                return original(self, weights=weights, device=device)
            if key not in built:
                built.clear()  # keep at most one model alive (P7 is 1.15 GB)
                built[key] = original(self, weights=weights, device=device)
            return built[key]

        mp.setattr(ZooSpec, "build", cached_build)
        yield path


def _small_size(name: str) -> int:
    """The smallest size at which every level has a 2x2 map (64 px for the stride-32 models)."""
    return max(64, 2 * zoo.spec(name).stride)


def _compare(name: str, path: Path, size: int, batch: int = 1) -> None:
    """onnxruntime on the exported file == PyTorch on the module (relative 1e-4)."""
    module = zoo.build(name)
    x = torch.randn(zoo.spec(name).input_shape(size, batch),
                    generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = module(x)
    refs = ref if isinstance(ref, tuple) else (ref,)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    assert len(outs) == len(refs)
    for got, want in zip(outs, refs, strict=True):
        want = want.numpy()
        assert got.shape == want.shape
        assert np.isfinite(got).all()
        # Relative 1e-4, with an absolute floor at 1e-4 of the output's largest magnitude (a
        # value near zero has no meaningful relative error).
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


QUICK = ["yolov4-tiny", "repvgg-a0", "resnet50", "yolov4-p5"]
# A zoo model whose export ends in an appended ONNX tail (NMS) has no PyTorch reference for the
# whole file: its network is the same module as its base (compared above) and its tail is tested
# in tests/test_cost_postprocess.py / tests/test_device_time.py.
SLOW = [n for n in zoo.names() if n not in QUICK and not zoo.spec(n).tail]


def _export_capture_compare(name: str) -> None:
    size = _small_size(name)
    path = zoo.export(name, image_size=size)
    captured = capture(name, image_size=size)  # the zoo door: export (cached) + ONNX capture
    assert captured.source == name and captured.stride == zoo.spec(name).stride
    assert captured.image_size == (size, size)
    _compare(name, path, size)
    # GraphInfo's MAC formula on the captured graph == meta-tensor propagation on the module.
    info = build_graph_info(captured.graph)
    assert info.macs == zoo.model_stats(name, size).macs
    assert [info.tensors[t].shape for t in info.outputs] == list(
        zoo.model_stats(name, size).outputs)


@pytest.mark.parametrize("name", QUICK)
def test_export_capture_numerics(name: str) -> None:
    _export_capture_compare(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_export_capture_numerics_all(name: str) -> None:
    _export_capture_compare(name)


def test_exported_graph_keeps_batchnorm_and_module_names() -> None:
    path = zoo.export("yolov4-p5", image_size=64)
    model = onnx.load(str(path), load_external_data=False)
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["Conv"] == 163 and ops["BatchNormalization"] == 155 and ops["Mish"] == 155
    names = {n.name for n in model.graph.node}
    assert {"backbone.stem.conv", "backbone.stem.bn", "backbone.stem.act", "spp.bn",
            "backbone.stages.2.csp.bn", "detect.0"} <= names
    assert [o.name for o in model.graph.output] == ["detect.0", "detect.1", "detect.2"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["tilec.zoo.name"] == "yolov4-p5" and meta["tilec.zoo.seed"]


@pytest.mark.slow
def test_mish_decomposed_export() -> None:
    op_path = zoo.export("yolov4-p5", image_size=64)
    dec_path = zoo.export("yolov4-p5", image_size=64, mish="decomposed")
    assert op_path != dec_path
    ops = Counter(n.op_type for n in onnx.load(str(dec_path)).graph.node)
    assert ops["Mish"] == 0 and ops["Softplus"] == ops["Tanh"] == 155
    assert ops["Mul"] == 155  # one Mul per Mish; P5 has no other multiplication
    _compare("yolov4-p5", dec_path, 64)
    # Older opsets have no Mish op: decomposed whatever was asked.
    old = onnx.load(str(zoo.export("yolov4-p5", image_size=64, opset=17)))
    assert old.opset_import[0].version == 17
    assert not any(n.op_type == "Mish" for n in old.graph.node)


def test_output_maps_at_default_size() -> None:
    # P5 at 896: three heads of 340 channels at 112, 56, 28 (from shapes alone: no weights).
    stats = zoo.model_stats("yolov4-p5")
    assert stats.outputs == ((1, 340, 112, 112), (1, 340, 56, 56), (1, 340, 28, 28))


@pytest.mark.slow
def test_p5_default_size_capture() -> None:
    captured = capture("yolov4-p5", batch=2)
    info = build_graph_info(captured.graph)
    assert [info.tensors[t].shape for t in info.outputs] == [
        (2, 340, 112, 112), (2, 340, 56, 56), (2, 340, 28, 28)]
    assert abs(info.macs / 2 - 163e9) <= 0.02 * 163e9
    conv_params = sum(op.params for op in info.ops if op.op_type == "Conv")
    bn_affine = sum(op.weights[0].elements * 2 for op in info.ops
                    if op.op_type == "BatchNormalization")
    assert conv_params + bn_affine == 70_834_012  # running statistics are not parameters


# ------------------------------------------------------------------------------ cache
def test_cache_hit_does_not_export_again(monkeypatch: pytest.MonkeyPatch) -> None:
    first = zoo.export("yolov4-tiny", image_size=96)
    stamp = first.stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("exported again despite a cached file")

    monkeypatch.setattr(zoo_cache, "export_model_proto", boom)
    assert zoo.export("yolov4-tiny", image_size=96) == first
    assert capture("yolov4-tiny", image_size=96).image_size == (96, 96)
    assert first.stat().st_mtime_ns == stamp
    with pytest.raises(AssertionError, match="exported again"):
        zoo.export("yolov4-tiny", image_size=96, refresh=True)


def test_cache_key_covers_every_input() -> None:
    base = zoo_cache.cached_path("yolov4-tiny", image_size=64)
    variants = [
        zoo_cache.cached_path("yolov4-tiny", image_size=128),
        zoo_cache.cached_path("yolov4-tiny", image_size=(64, 96)),
        zoo_cache.cached_path("yolov4-tiny", image_size=64, batch=2),
        zoo_cache.cached_path("yolov4-tiny", image_size=64, opset=17),
        zoo_cache.cached_path("yolov4-tiny", image_size=64, mish="decomposed"),
        zoo_cache.cached_path("repvgg-a0", image_size=64),
    ]
    assert len({base, *variants}) == 7
    assert base.parent == zoo.cache_dir() and str(base).startswith(os.environ["TILEC_CACHE_DIR"])
    # The source of the zoo and of the converter is part of the key.
    assert len(zoo_cache.source_hash()) == 64
    key = zoo_cache.cache_key("yolov4-tiny", (64, 64), 1, 18, "op")
    zoo_cache.source_hash.cache_clear()
    try:
        original = zoo_cache.source_hash
        zoo_cache.source_hash = lambda: "edited"  # type: ignore[assignment]
        assert zoo_cache.cache_key("yolov4-tiny", (64, 64), 1, 18, "op") != key
    finally:
        zoo_cache.source_hash = original  # type: ignore[assignment]


def test_source_hash_reads_every_zoo_and_converter_module(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """The key must change when any module of the fx converter package or the zoo changes; the
    converter is split over several files, so a new one must not be left out of the hash."""
    import tilec.capture.fx
    import tilec.zoo

    read: list[Path] = []
    original = Path.read_bytes

    def recording(self: Path) -> bytes:
        read.append(self.resolve())
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", recording)
    zoo_cache.source_hash.cache_clear()
    try:
        zoo_cache.source_hash()
    finally:
        zoo_cache.source_hash.cache_clear()
    for package in (tilec.capture.fx, tilec.zoo):
        modules = sorted(Path(package.__file__).resolve().parent.glob("*.py"))
        assert len(modules) > 1
        missing = [m.name for m in modules if m not in read]
        assert not missing, f"{package.__name__}: {missing} not in the zoo cache key"


def test_batch_export_and_no_temporaries_left() -> None:
    path = zoo.export("repvgg-a0", image_size=64, batch=3)
    model = onnx.load(str(path))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [3, 3, 64, 64]
    _compare("repvgg-a0", path, 64, batch=3)
    assert not list(path.parent.glob("*.tmp"))


def test_write_atomically_replaces(tmp_path: Path) -> None:
    target = tmp_path / "m.onnx"
    target.write_bytes(b"stale partial file")
    model = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    zoo_cache.write_atomically(model, target)
    assert onnx.load(str(target)).graph.name == "g"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.slow
def test_concurrent_exports_agree(tmp_path: Path) -> None:
    """Several processes exporting the same model at once all get a complete, identical file."""
    code = ("from tilec import zoo; p = zoo.export('yolov4-tiny', image_size=64); "
            "import onnx; onnx.checker.check_model(str(p)); print(p)")
    env = {**os.environ, "TILEC_CACHE_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    report = [(p.returncode, o[0][-400:], o[1][-1500:]) for p, o in zip(procs, outs, strict=True)]
    assert all(p.returncode == 0 for p in procs), report
    assert len({o[0].strip() for o in outs}) == 1, report
    assert not list((tmp_path / "zoo").glob("*.tmp")), sorted((tmp_path / "zoo").iterdir())


# ------------------------------------------------------------------------------ bad input
def test_bad_requests() -> None:
    with pytest.raises(InputError, match="not a multiple of the network's stride 32; try 64 or 96"):
        zoo.export("yolov4-p5", image_size=70)
    with pytest.raises(InputError, match="stride 128"):
        capture("yolov4-p7", image_size=200)
    with pytest.raises(InputError, match="--opset"):
        zoo.export("yolov4-tiny", image_size=64, opset=9)
    with pytest.raises(InputError, match="--mish"):
        zoo.export("yolov4-tiny", image_size=64, mish="fused")
    with pytest.raises(InputError, match="built-in: yolov4-p5"):
        zoo.export("yolov9")


def test_unwritable_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("TILEC_CACHE_DIR", str(blocker))
    with pytest.raises(InputError, match="TILEC_CACHE_DIR"):
        zoo.export("yolov4-tiny", image_size=64)


# ------------------------------------------------------------------------------ CLI
def test_cli_zoo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tilec.cli import main

    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for name in zoo.names():
        assert name in out
    assert "70.83 M" in out and "163.32 G" in out  # P5's parameters and MACs at 896

    assert main(["zoo", "show", "yolov4-p5"]) == 0
    out = capsys.readouterr().out
    assert "70,834,012" in out and "1x340x112x112" in out and "convolutions: 163" in out

    target = tmp_path / "tiny.onnx"
    assert main(["zoo", "export", "yolov4-tiny", "-o", str(target), "--image-size", "64",
                 "--batch", "2", "--opset", "17"]) == 0
    model = onnx.load(str(target))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == 17
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [2, 3, 64, 64]

    assert main(["zoo", "cache"]) == 0
    assert "cached export" in capsys.readouterr().out

    for argv, words in ((["zoo", "show", "yolov9"], "not a built-in model"),
                        (["zoo", "export", "yolov4-tiny", "-o", str(target), "-s", "65"],
                         "not a multiple"),
                        (["zoo", "export", "yolov4-tiny", "-o", str(tmp_path / "no" / "x.onnx")],
                         "does not exist")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0]


def test_cli_compile_accepts_a_zoo_name(capsys: pytest.CaptureFixture[str]) -> None:
    from tilec.cli import main

    assert main(["inspect", "yolov4-tiny", "--image-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "yolov4-tiny" in out and "Conv" in out


def test_a_new_export_removes_the_stale_copies_of_its_configuration() -> None:
    """Files of the same configuration under another key (made by older code) are removed when
    the new one is written; other configurations stay."""
    path = zoo.export("yolov4-tiny", image_size=64)
    prefix = path.stem.rsplit("-", 1)[0]
    stale = path.parent / f"{prefix}-0123456789abcdef.onnx"
    other = path.parent / f"{prefix.replace('-op', '-decomposed')}-0123456789abcdef.onnx"
    stale.write_bytes(b"old")
    other.write_bytes(b"another configuration")
    again = zoo.export("yolov4-tiny", image_size=64, refresh=True)
    assert again == path and again.exists()
    assert not stale.exists()
    assert other.exists()
    other.unlink()


@pytest.mark.slow
def test_nms_tail_export_runs_on_onnxruntime() -> None:
    """The tail variant's file runs as exported: uint8 images in, at most 300 detections per
    image out, six finite numbers each (its network is compared with PyTorch above, as its base)."""
    name = next(n for n in zoo.names() if zoo.spec(n).tail == "nms")
    size = _small_size(name)
    path = zoo.export(name, image_size=size)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).integers(0, 256, size=(1, 3, size, size), dtype=np.uint8)
    (det, *_rest) = sess.run(None, {inp.name: x})
    assert det.ndim == 2 and det.shape[1] == 6 and det.shape[0] <= 300
    assert np.isfinite(det).all()
