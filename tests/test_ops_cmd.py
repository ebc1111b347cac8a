"""``tilec ops``: the supported list the unsupported-op error points to."""

from __future__ import annotations

import json

import pytest

from tilec.cli import main
from tilec.opinfo import CONSTANT_ONLY_OPS, OP_KINDS


def test_ops_lists_every_op_type_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ops", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    listed = [op for ops in data["kinds"].values() for op in ops]
    assert sorted(listed) == sorted(OP_KINDS) and len(listed) == len(set(listed))
    assert data["constant_only"] == sorted(CONSTANT_ONLY_OPS)
    assert data["target"] is None


def test_ops_for_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ops", "--target", "northpole"]) == 0
    out = capsys.readouterr().out
    # NorthPole runs no data-dependent control flow: TopK / NonMaxSuppression stay on the host
    assert out.startswith(f"northpole (northpole cost model) plans {len(OP_KINDS) - 2} op types")
    assert "Conv ConvTranspose" in out and "TopK" not in out
    assert main(["ops", "--target", "gc200"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"gc200 (ipu cost model) plans {len(OP_KINDS)} op types")
    assert "NonMaxSuppression  (on the chip where a node is annotated tilec.on_device" in out
    assert main(["ops", "--target", "nosuchchip"]) == 2
    assert "unknown target 'nosuchchip'" in capsys.readouterr().err
