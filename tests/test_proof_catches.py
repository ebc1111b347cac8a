"""The proof fails loudly on a wrong rewrite: each exact pass, made to get one channel of one
weight wrong by 1e-3, is caught by the onnxruntime proof (issue 13: making the proof cheap must
not make it blind)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from tilec.passes import REGISTRY, run_pipeline
from tilec.passes._testing import Builder, capture, ids_of, perturb_one_channel

from tilec.errors import InternalError


def _fold_bn() -> Builder:
    b = Builder()
    x = b.input("x", [1, 8, 12, 12])
    b.output(b.op("Relu", [b.bn(b.conv(x, 8, 16, 3), 16)]))
    return b


def _repvgg() -> Builder:
    b = Builder()
    x = b.input("x", [1, 8, 12, 12])
    s = b.op("Add", [b.conv(x, 8, 8, 3, bias=True), b.conv(x, 8, 8, 1, bias=True)])
    b.output(b.op("Relu", [b.op("Add", [s, x])]))
    return b


def _activation() -> Builder:
    b = Builder()
    x = b.input("x", [1, 8, 12, 12])
    y = b.conv(x, 8, 16, 3, bias=True)
    b.output(b.op("Mul", [y, b.op("Tanh", [b.op("Softplus", [y])])]))  # decomposed Mish
    return b


def _canonicalize() -> Builder:
    """A weight computed from constants (an exporter's weight-standardisation, say)."""
    b = Builder()
    x = b.input("x", [1, 8, 12, 12])
    w = b.op("Mul", [b.const(b.rng.normal(0, 0.1, (16, 8, 3, 3)).astype(np.float32), "w"),
                     b.const(np.float32(1.5))])
    y = b.op("Conv", [x, w], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    b.output(b.op("Relu", [b.op("Identity", [y])]))
    return b


def _concat() -> Builder:
    b = Builder()
    x = b.input("x", [1, 8, 12, 12])
    b.output(b.op("Concat", [b.conv(x, 8, 8, 3), b.conv(x, 8, 8, 1)], axis=1))
    return b


CASES = {"canonicalize": _canonicalize, "fold-bn": _fold_bn, "fuse-repvgg": _repvgg,
         "fuse-activation": _activation, "concat-in-place": _concat}


def _wrong(monkeypatch, name: str, where: list[str]) -> None:
    """Make pass ``name`` get one channel of one weight it produced wrong by 1e-3."""
    module = REGISTRY[name].module
    real = module.run

    def wrong(graph, ctx):
        before = ids_of(graph)
        real(graph, ctx)
        hit = perturb_one_channel(graph, before, rel=1e-3)
        if hit is None and name == "concat-in-place":  # annotates only: it changes a weight
            hit = perturb_one_channel(graph, set(), rel=1e-3)
        where.append(hit)

    monkeypatch.setattr(module, "run", wrong)


def _measured(exc: BaseException) -> float:
    m = re.search(r"relative error ([0-9.e+-]+) >", str(exc))
    assert m, str(exc)
    return float(m.group(1))


def test_every_exact_pass_has_a_case():
    assert {n for n, p in REGISTRY.items() if p.exact} == set(CASES)


@pytest.mark.parametrize("mode", ["pass", "pipeline"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_correct_pass_passes_the_proof(name, mode):
    summary: dict = {}
    _, stats = run_pipeline(capture(CASES[name]().model()), [name], precision="fp32",
                            verify=mode, summary=summary)
    assert stats[0].rewrites, f"{name} found nothing to rewrite in its test graph"
    assert stats[0].verify is not None and stats[0].verify.ok


@pytest.mark.parametrize("mode", ["pass", "pipeline"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_wrong_fold_is_caught(monkeypatch, name, mode):
    where: list = []
    _wrong(monkeypatch, name, where)
    message = "should only annotate" if REGISTRY[name].annotates_only else "changed the model"
    with pytest.raises(InternalError, match=message) as caught:
        run_pipeline(capture(CASES[name]().model()), [name], precision="fp32", verify=mode)
    assert where and where[0] is not None  # the injection did hit a weight
    if not REGISTRY[name].annotates_only:  # measured where it was made: ~the 1e-3 put in
        assert _measured(caught.value) > 5e-4


def test_a_wrong_fold_in_a_longer_pipeline_is_caught_on_the_probe(monkeypatch):
    """In pipeline mode the exact passes are proved together, on a re-shaped probe (batch 1,
    a smaller image) -- the wrong channel is caught there too, whichever pass made it."""
    b = Builder()
    x = b.input("x", [2, 8, 96, 96])
    y = b.bn(b.conv(x, 8, 16, 3, stride=2), 16)
    b.output(b.op("Mul", [y, b.op("Tanh", [b.op("Softplus", [y])])]))
    where: list = []
    _wrong(monkeypatch, "fuse-activation", where)
    summary: dict = {}
    with pytest.raises(InternalError, match=r"changed the model.*probe \{'x': \[1, 8, 64, 64\]\}"
                       ) as caught:
        run_pipeline(capture(b.model()), ["canonicalize", "fold-bn", "fuse-activation"],
                     precision="fp32", verify="pipeline", summary=summary)
    assert where and where[0] is not None
    assert _measured(caught.value) > 5e-4
