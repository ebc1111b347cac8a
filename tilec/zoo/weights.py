"""Random but deterministic weights for the zoo, with non-trivial BatchNorm statistics.

No trained weights can be downloaded, yet the zoo's models must exercise the passes for real: a
BN-folding pass that ignored ``running_mean`` would still "work" on identity statistics (mean 0,
var 1, gamma 1, beta 0), so every BN here has random affine parameters *and* random running
statistics. Three problems had to be solved for the result to stay usable through 100+ layers:

1. **Drift.** Unrelated random statistics rescale activations by ``1/sqrt(var)`` at every BN until
   outputs are inf or all ~0. So statistics are *calibrated, then perturbed*: one forward pass on a
   fixed random image sets each BN's running mean and variance from the input it actually sees --
   every earlier BN already final -- then ``mean += N(0, 0.1) * std`` and ``var *= U(0.5, 2)``.
   No channel's variance is taken below a tenth of its layer's median: a channel whose few samples
   happened to agree would otherwise amplify every later deviation. The calibration image is big
   enough for the coarsest map to be at least 4x4 (:attr:`ZooSpec.calibration_size`).
2. **Size shift.** Fixed statistics make a deep random network fragile to any change of its input
   distribution, compounding through the BNs; the main one is the input *size*, which changes the
   share of zero-padded border pixels, and zero is far from a typical post-activation value. Conv
   kernels are therefore drawn N(0, 1/fan_in) and then centred to zero mean per output filter: the
   common mean of the input cancels and zero padding looks like an ordinary activation.
3. **Chaos.** A BN network at random initialisation is chaotic: with pre-activations centred on the
   kink of ReLU / Mish, a perturbation grows faster per layer than the signal. Float32 rounding grew
   to a 1e-2 .. 5e-2 relative disagreement between onnxruntime and PyTorch on P6 / P7 (gamma
   U(0.5, 1.5), beta N(0, 0.1)), and no numerical check of a pass could tell a bug from noise. So
   BN's affine parameters put activations mostly on the smooth side of the nonlinearity: gamma
   U(0.25, 0.75), beta N(0.4, 0.1) -- the nonlinearities still bend, the spread being comparable to
   the shift.

Measured (``tests/test_zoo_models.py`` and ``test_zoo_export.py`` check both, with margins): head
outputs have a standard deviation of 0.3 .. 2 from the smallest legal size to 4x it, and
onnxruntime matches PyTorch to <= 3e-5 of the output's largest magnitude on every model. Linear
weights are N(0, 1/fan_in), conv / linear biases U(-0.1, 0.1).

Everything draws from one ``torch.Generator`` seeded per model, in module-registration order, so the
same name always gives the same weights -- bit for bit on one PyTorch build and thread count (the
calibration pass runs float32 kernels, whose summation order may depend on the thread count; only
the last bits of the statistics could differ, and the export cache makes one file win per machine).
"""

from __future__ import annotations

import math
import zlib

import torch
from torch import nn


def seed_for(name: str) -> int:
    """The fixed seed of a zoo model (stable across runs and platforms: CRC-32 of its name)."""
    return zlib.crc32(name.encode("utf-8"))


@torch.no_grad()
def init_weights(model: nn.Module, seed: int, calib_size: int, calib_batch: int = 1) -> nn.Module:
    """Fill ``model``'s parameters and BN statistics deterministically; return it in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in = module.weight[0].numel()
            module.weight.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=gen)
            if isinstance(module, nn.Conv2d) and fan_in > 1:
                w = module.weight.view(module.weight.shape[0], -1)  # one row per filter
                w.sub_(w.mean(dim=1, keepdim=True))
            if module.bias is not None:
                module.bias.uniform_(-0.1, 0.1, generator=gen)
        elif isinstance(module, nn.BatchNorm2d):
            module.weight.uniform_(0.25, 0.75, generator=gen)
            module.bias.normal_(0.4, 0.1, generator=gen)
            module.running_mean.zero_()  # set for real by the calibration below
            module.running_var.fill_(1.0)
            module.num_batches_tracked.zero_()
        elif any(True for _ in module.parameters(recurse=False)) or any(
                True for _ in module.buffers(recurse=False)):
            # The zoo builds modules on uninitialised storage: every tensor must be set here.
            raise TypeError(f"init_weights: no rule for {type(module).__name__} '{name}'")
    calibrate_batchnorm(model, gen, calib_size, calib_batch)
    return model.eval()


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, gen: torch.Generator, size: int, batch: int) -> None:
    """Set every BN's running statistics from one eval-mode forward pass, then perturb them.

    A pre-forward hook on each BN measures its input and writes the (perturbed) statistics before
    the BN runs, so downstream BNs are calibrated against the final upstream ones.
    """
    model.eval()

    def hook(module: nn.BatchNorm2d, args: tuple[torch.Tensor, ...]) -> None:
        if getattr(module, "_tilec_calibrated", False):
            return
        x = args[0].double()  # float64 reductions: exact enough to be order-independent
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        # A channel whose few calibration samples happen to agree would get a tiny variance and
        # amplify every later deviation enormously; no channel is scaled up more than ~3x beyond
        # its layer's typical channel.
        var = torch.maximum(var, 0.1 * var.median()).clamp_min(1e-6)
        c = mean.numel()
        noise = torch.randn(c, generator=gen, dtype=torch.float64)
        factor = torch.empty(c, dtype=torch.float64).uniform_(0.5, 2.0, generator=gen)
        module.running_mean.copy_(mean + 0.1 * noise * var.sqrt())
        module.running_var.copy_(var * factor)
        module._tilec_calibrated = True

    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    handles = [m.register_forward_pre_hook(hook) for m in bns]
    try:
        model(torch.randn(batch, 3, size, size, generator=gen))
    finally:
        for h in handles:
            h.remove()
        for m in bns:
            if hasattr(m, "_tilec_calibrated"):
                del m._tilec_calibrated
