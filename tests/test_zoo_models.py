"""The zoo's networks: structure against the published figures, and the seeded weights.

Parameter counts come from PyTorch directly; MACs from meta-tensor propagation
(:func:`tilec.zoo.model_stats`), cross-checked against tilec's own GraphInfo MAC formula on captured
graphs in ``test_zoo_export.py``. Targets are the figures quoted in issue 3 and in
``shared/reference/models.md`` (which cite the official configurations and papers).
"""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch
from torch import nn

from tilec import zoo
from tilec.errors import InputError
from tilec.zoo import repvgg


def _params(name: str) -> int:
    return sum(p.numel() for p in zoo.spec(name).build(device="meta").parameters())


@lru_cache(maxsize=4)
def _built(name: str) -> nn.Module:
    return zoo.build(name)


# ------------------------------------------------------------------------------ catalogue
def test_names_and_specs() -> None:
    names = zoo.names()
    for required in ("yolov4-p5", "yolov4-p6", "yolov4-p7", "yolov4", "yolov4-tiny", "resnet50",
                     "repvgg-a0", "repvgg-a1", "repvgg-a2", "repvgg-b0", "repvgg-b1",
                     "repvgg-b2", "repvgg-b3"):
        assert required in names
    assert len(set(names)) == len(names)
    expected = {"yolov4-p5": (896, 32), "yolov4-p6": (1280, 64), "yolov4-p7": (1536, 128),
                "yolov4": (608, 32), "yolov4-tiny": (416, 32), "resnet50": (224, 32)}
    for name, (size, stride) in expected.items():
        spec = zoo.spec(name)
        assert (spec.default_image_size, spec.stride) == (size, stride)
        assert spec.default_image_size % spec.stride == 0
        assert spec.description


def test_unknown_name_lists_the_zoo() -> None:
    with pytest.raises(InputError) as err:
        zoo.spec("yolov5s")
    assert "yolov5s" in str(err.value) and "yolov4-p5" in str(err.value)


def test_importing_the_zoo_does_not_import_torch_models() -> None:
    # tilec.capture.resolve_kind consults zoo.names() for every model argument: it must stay cheap.
    import subprocess
    import sys

    code = ("import sys, tilec.zoo; tilec.zoo.names(); "
            "print('torch' in sys.modules, 'tilec.zoo.scaled_yolov4' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ------------------------------------------------------------------------------ parameters
@pytest.mark.parametrize(("name", "target", "tol"), [
    ("yolov4-p5", 70_834_012, 0.001),
    ("yolov4", 64.36e6, 0.005),
    ("yolov4-tiny", 6.06e6, 0.01),
    ("yolov4-p6", 127.6e6, 0.01),
    ("yolov4-p7", 287.6e6, 0.01),
    ("resnet50", 25_557_032, 0.0),
    ("repvgg-a0", 9.11e6, 0.001),
    ("repvgg-b0", 15.82e6, 0.001),
])
def test_parameter_counts(name: str, target: float, tol: float) -> None:
    got = _params(name)
    assert abs(got - target) <= tol * target, f"{name}: {got:,} parameters, target {target:,.0f}"


def test_p5_parameters_exact() -> None:
    # models.md: "Scaled-YOLOv4-P5 exactly as described there gives 70,834,012 parameters".
    assert _params("yolov4-p5") == 70_834_012


@pytest.mark.parametrize(("variant", "paper_m"), [
    ("a0", 8.30), ("a1", 12.78), ("a2", 25.49), ("b0", 14.33), ("b1", 51.82),
    ("b1g2", 41.36), ("b1g4", 36.12), ("b2", 80.31), ("b2g4", 55.77),
])
def test_repvgg_inference_form_matches_paper(variant: str, paper_m: float) -> None:
    # The paper quotes inference-form (fused) sizes; derive ours from the training-form shapes.
    with torch.device("meta"):
        model = repvgg.build(variant)
    fused = repvgg.fused_param_count(model)
    assert abs(fused / 1e6 - paper_m) < 0.015, f"repvgg-{variant}: {fused:,} vs {paper_m}M"
    # The training form really has the extra branches (so fusion has work to do).
    assert sum(p.numel() for p in model.parameters()) > fused * 1.05


def test_repvgg_blocks_have_three_branches_where_shapes_allow() -> None:
    with torch.device("meta"):
        model = repvgg.build("b1g4")
    blocks = [m for m in model.modules() if isinstance(m, repvgg.RepVGGBlock)]
    assert len(blocks) == 1 + 4 + 6 + 16 + 1
    identity = [b for b in blocks if b.rbr_identity is not None]
    # One block per stage changes shape (stride 2): no identity branch there.
    assert len(identity) == len(blocks) - 5
    groups = [b.rbr_dense.conv.groups for b in blocks]
    assert groups[0] == 1 and groups[1] == 1 and groups[2] == 4 and groups[3] == 1
    assert all(b.rbr_dense.conv.groups == b.rbr_1x1.conv.groups for b in blocks)


# ------------------------------------------------------------------------------ structure / MACs
def test_p5_structure_and_macs() -> None:
    stats = zoo.model_stats("yolov4-p5")
    assert stats.image_size == (896, 896)
    assert stats.convs == 163  # models.md: 163 convolutions
    assert abs(stats.conv_macs - 163e9) <= 0.02 * 163e9
    assert stats.outputs == ((1, 340, 112, 112), (1, 340, 56, 56), (1, 340, 28, 28))


def test_p5_keeps_the_standalone_bn_after_each_csp_concat() -> None:
    from tilec.zoo.scaled_yolov4 import SPPCSP, BottleneckCSP, BottleneckCSP2

    model = zoo.spec("yolov4-p5").build(device="meta")
    csps = [m for m in model.modules() if isinstance(m, (BottleneckCSP, BottleneckCSP2, SPPCSP))]
    assert len(csps) == 5 + 4 + 1  # backbone stages, neck CSP2 blocks, SPPCSP
    for block in csps:
        assert isinstance(block.bn, nn.BatchNorm2d)
        assert isinstance(block.cv2, nn.Conv2d) and block.cv2.bias is None  # plain conv, no BN
        assert block.bn.num_features == 2 * block.cv2.out_channels


def test_yolov4_structure_and_macs() -> None:
    stats = zoo.model_stats("yolov4")
    assert stats.convs == 110  # yolov4.cfg: 110 convolutional layers
    assert abs(stats.conv_macs - 64.2e9) <= 0.02 * 64.2e9
    assert stats.outputs == ((1, 255, 76, 76), (1, 255, 38, 38), (1, 255, 19, 19))
    model = zoo.spec("yolov4").build(device="meta")
    acts = [type(m) for m in model.modules() if isinstance(m, (nn.Mish, nn.LeakyReLU))]
    assert acts.count(nn.Mish) == 72 and acts.count(nn.LeakyReLU) == 35  # models.md


def test_tiny_structure_and_macs() -> None:
    stats = zoo.model_stats("yolov4-tiny")
    assert stats.convs == 21
    assert abs(stats.conv_macs - 3.45e9) <= 0.02 * 3.45e9
    assert stats.outputs == ((1, 255, 26, 26), (1, 255, 13, 13))


def test_resnet50_macs() -> None:
    stats = zoo.model_stats("resnet50")
    assert abs(stats.macs - 4.1e9) <= 0.02 * 4.1e9
    assert stats.outputs == ((1, 1000),)


def test_p6_p7_levels() -> None:
    p6 = zoo.model_stats("yolov4-p6")
    assert [o[2] for o in p6.outputs] == [160, 80, 40, 20]
    p7 = zoo.model_stats("yolov4-p7")
    assert [o[2] for o in p7.outputs] == [192, 96, 48, 24, 12]
    assert all(o[1] == 340 for o in p6.outputs + p7.outputs)


def test_macs_scale_with_image_area() -> None:
    # Fully convolutional with "same" padding: MACs are exactly proportional to the pixel count.
    small, big = zoo.model_stats("yolov4-p5", 128), zoo.model_stats("yolov4-p5", 256)
    assert big.conv_macs == 4 * small.conv_macs
    with pytest.raises(InputError, match="multiple of the network's stride 32"):
        zoo.model_stats("yolov4-p5", 100)


# ------------------------------------------------------------------------------ weights
def test_weights_are_deterministic_and_per_model() -> None:
    a = zoo.build("yolov4-tiny")
    b = zoo.build("yolov4-tiny")
    for (na, ta), (nb, tb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert na == nb and torch.equal(ta, tb), na
    assert zoo.spec("repvgg-a0").seed != zoo.spec("repvgg-a1").seed


def test_batchnorm_statistics_are_non_trivial() -> None:
    model = _built("yolov4-tiny")
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns
    for bn in bns:
        assert not bn.training
        assert bn.running_mean.abs().max() > 1e-3  # not the default 0
        assert (bn.running_var - 1).abs().max() > 1e-2  # not the default 1
        assert bn.running_var.min() > 0
        assert bn.weight.std() > 0.05 and (bn.weight - 1).abs().min() > 0.2  # gamma random, != 1
        assert bn.bias.abs().max() > 0.1
        assert torch.isfinite(bn.running_var).all() and torch.isfinite(bn.running_mean).all()


def test_conv_kernels_are_random_and_zero_mean_per_filter() -> None:
    model = _built("yolov4-tiny")
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight.detach().flatten(1)
            assert w.std() > 0
            assert w.mean(dim=1).abs().max() < 1e-6  # see tilec.zoo.weights, problem 2


@pytest.mark.parametrize("name", [
    "yolov4-tiny", "resnet50", "repvgg-a0",
    pytest.param("yolov4-p5", marks=pytest.mark.slow),
])
def test_outputs_are_sane_across_sizes(name: str) -> None:
    """Outputs finite and O(1) -- neither exploding nor vanishing -- from 64 to 192 px."""
    model = _built(name)
    spec = zoo.spec(name)
    gen = torch.Generator().manual_seed(0)
    for size in (64, 192):
        with torch.no_grad():
            out = model(torch.randn(spec.input_shape(size), generator=gen))
        for y in out if isinstance(out, tuple) else (out,):
            assert torch.isfinite(y).all()
            assert 0.05 < float(y.std()) < 10, f"{name} at {size}: std {float(y.std())}"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["yolov4-p6", "yolov4-p7", "yolov4", "repvgg-b3"])
def test_outputs_are_sane_large_models(name: str) -> None:
    model = zoo.build(name)
    spec = zoo.spec(name)
    base = max(64, 2 * spec.stride)
    for size in (base, 2 * base):
        with torch.no_grad():
            out = model(torch.randn(spec.input_shape(size)))
        for y in out if isinstance(out, tuple) else (out,):
            assert torch.isfinite(y).all()
            assert 0.05 < float(y.std()) < 10, f"{name} at {size}: std {float(y.std())}"
