"""Parameter and MAC counts of zoo models from meta-tensor propagation (no weights, no compute).

``tilec zoo list`` prints these for every model; building P7 with real weights would allocate
1.15 GB and take seconds, but on PyTorch's ``meta`` device a module has shapes and no storage, and a
forward pass only propagates shapes. A forward hook on each Conv / Linear adds its MACs:
``output elements x (input channels / groups) x kernel area`` for a conv and
``output elements x in_features`` for a linear layer -- the same convention as
:func:`tilec.opinfo.build_graph_info`, which the tests cross-check on captured graphs.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass

from tilec.zoo.registry import spec


@dataclass(frozen=True)
class ModelStats:
    """Size facts of a zoo model at one input size (batch 1)."""

    name: str
    image_size: tuple[int, int]
    params: int  # trainable parameters of the module as built (RepVGG: training-time form)
    conv_macs: int
    linear_macs: int
    convs: int
    outputs: tuple[tuple[int, ...], ...]

    @property
    def macs(self) -> int:
        return self.conv_macs + self.linear_macs

    @classmethod
    def from_dict(cls, data: dict) -> ModelStats:
        return cls(name=data["name"], image_size=tuple(data["image_size"]),
                   params=int(data["params"]), conv_macs=int(data["conv_macs"]),
                   linear_macs=int(data["linear_macs"]), convs=int(data["convs"]),
                   outputs=tuple(tuple(o) for o in data["outputs"]))


def default_stats(names: list[str]) -> dict[str, ModelStats]:
    """Stats at each model's default size, kept in a small JSON file next to the exports.

    The first meta-tensor forward of a process costs seconds of one-time PyTorch warm-up (and
    ``import torch`` itself a few more); the figures only change with the zoo's code, so they are
    stored keyed by :func:`tilec.zoo.cache.source_hash` and ``tilec zoo list`` then needs no torch.
    """
    from tilec.zoo.cache import cache_dir, source_hash

    path = cache_dir() / f"stats-{source_hash()[:16]}.json"
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        stored = {}
    result: dict[str, ModelStats] = {}
    changed = False
    for name in names:
        try:
            result[name] = ModelStats.from_dict(stored[name])
        except (KeyError, TypeError, ValueError):
            result[name] = model_stats(name)
            stored[name] = asdict(result[name])
            changed = True
    if changed:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".stats.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(stored, fh, sort_keys=True)
        os.replace(tmp, path)
    return result


def model_stats(name: str, image_size: int | tuple[int, int] | None = None) -> ModelStats:
    """Count ``name``'s parameters and MACs at ``image_size`` (default: the model's own)."""
    import torch
    from torch import nn

    from tilec.zoo.cache import normalise_size

    zspec = spec(name)
    hw = normalise_size(zspec, image_size)
    model = zspec.build(device="meta")
    params = sum(p.numel() for p in model.parameters())
    _drop_shape_preserving(model)
    totals = {"conv": 0, "linear": 0}

    def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            totals["conv"] += out.numel() * module.weight[0].numel()
        else:
            totals["linear"] += out.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            out = model(torch.empty(zspec.input_shape(hw), device="meta"))
    finally:
        for h in handles:
            h.remove()
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return ModelStats(
        name=name, image_size=hw, params=params,
        conv_macs=int(totals["conv"]), linear_macs=int(totals["linear"]),
        convs=sum(isinstance(m, nn.Conv2d) for m in model.modules()),
        outputs=tuple(tuple(int(d) for d in o.shape) for o in outs),
    )


def _drop_shape_preserving(model) -> None:
    """Replace BN and activation modules by ``nn.Identity`` (after counting parameters).

    They keep shapes and hold no MACs, but on the meta device elementwise ops run PyTorch's Python
    reference decompositions (~1 ms each); dropping them makes counting P5 ~5x faster.
    """
    from torch import nn

    kinds = (nn.BatchNorm2d, nn.Mish, nn.ReLU, nn.LeakyReLU, nn.SiLU, nn.Sigmoid)
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, kinds):
                setattr(parent, child_name, nn.Identity())
