"""onnxruntime helpers: seeded random inputs, running a model, comparing outputs, SQNR.

Every lowering pass is proved by running the model before and after through onnxruntime (the
reference implementation of ONNX semantics, independent of tilec's own code). These helpers are
what the passes' verifier, the tests and the benchmarks share, so "equal" means the same thing
everywhere:

* :func:`rel_error` -- the error of ``got`` against ``ref`` relative to the *scale* of ``ref``:
  ``max|got - ref| / max|ref|``. Element-wise relative error is meaningless where the reference is
  near zero (every ReLU output), so tilec measures against the largest magnitude instead.
* :func:`sqnr_db` -- signal-to-quantization-noise ratio, ``10 log10(sum ref^2 / sum (ref-got)^2)``.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from tilec.errors import InputError

ModelLike = onnx.ModelProto | bytes | str | Path | ort.InferenceSession

_ORT_TO_NUMPY = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}

DEFAULT_TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9,
                     np.dtype(np.float16): 1e-2}
"""Relative tolerance of an *exact* rewrite by output dtype: fp32 re-association of a folded
kernel moves results by ~1e-6 of their scale; 1e-4 leaves two orders of margin and still catches any
real mistake (a wrong channel, a misplaced tap, a dropped bias all give errors of order 1e-2..1)."""


def tolerance_for(dtype: Any) -> float:
    """Default relative tolerance for an exact rewrite whose outputs have ``dtype``."""
    return DEFAULT_TOLERANCE.get(np.dtype(dtype), 1e-4)


def session(model: ModelLike, *, optimize: bool = True, threads: int | None = None,
            quiet: bool = False) -> ort.InferenceSession:
    """An onnxruntime CPU session for ``model`` (a ModelProto, serialized bytes or a path).

    ``optimize`` selects ORT's *basic* graph optimisations (constant folding -- it dequantizes
    constant weights once -- and redundant-node elimination); the extended layout rewrites are left
    off because their session start-up costs more than they save on the small probe runs tilec
    makes. ``threads`` defaults to the machine's cores. ``quiet`` silences onnxruntime's own
    error log (for runs whose failure the caller handles).
    """
    if isinstance(model, ort.InferenceSession):
        return model
    opts = ort.SessionOptions()
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    opts.intra_op_num_threads = threads or max(1, os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 4 if quiet else 3  # warnings about unused initializers are noise
    if isinstance(model, onnx.ModelProto):
        payload: bytes | str = model.SerializeToString()
    elif isinstance(model, Path):
        payload = str(model)
    else:
        payload = model
    return ort.InferenceSession(payload, sess_options=opts, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class InputSpec:
    """A model input as onnxruntime reports it."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


def input_specs(sess: ort.InferenceSession, skip: Collection[str] = ()) -> list[InputSpec]:
    """The session's inputs with concrete shapes (a dynamic dimension is an error)."""
    specs = []
    for arg in sess.get_inputs():
        if arg.name in skip:
            continue
        dims = tuple(arg.shape)
        if not all(isinstance(d, int) and d >= 0 for d in dims):
            raise InputError(f"input '{arg.name}' has a dynamic shape {list(dims)}; give a fixed "
                             "one (--batch / --image-size)")
        dtype = _ORT_TO_NUMPY.get(arg.type)
        if dtype is None:
            raise InputError(f"input '{arg.name}' has type {arg.type}, which tilec cannot feed")
        specs.append(InputSpec(arg.name, tuple(int(d) for d in dims), np.dtype(dtype)))
    return specs


def random_inputs(model: ModelLike, *, seed: int = 0, low: float = -1.0, high: float = 1.0,
                  skip: Collection[str] = ()) -> dict[str, np.ndarray]:
    """Seeded random values for every input of ``model``.

    Floats are uniform in [low, high) -- signed, so every activation's negative branch (Mish, leaky
    ReLU) is exercised; integers are small non-negative values (valid indices); booleans are fair
    coin flips. Inputs are drawn in input order from one generator: same seed, same values.
    Inputs named in ``skip`` (e.g. weights fed as inputs) are left out.
    """
    sess = session(model)
    rng = np.random.default_rng(seed)
    values: dict[str, np.ndarray] = {}
    for spec in input_specs(sess, skip=skip):
        if np.issubdtype(spec.dtype, np.floating):
            arr = rng.uniform(low, high, size=spec.shape).astype(spec.dtype)
        elif spec.dtype == np.bool_:
            arr = rng.integers(0, 2, size=spec.shape).astype(np.bool_)
        else:
            arr = rng.integers(0, 4, size=spec.shape).astype(spec.dtype)
        values[spec.name] = arr
    return values


def run(model: ModelLike, inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Run ``model`` on ``inputs``; return its outputs (all of them, or ``outputs``) by name."""
    sess = session(model)
    names = list(outputs) if outputs is not None else [o.name for o in sess.get_outputs()]
    values = sess.run(names, dict(inputs))
    return dict(zip(names, values, strict=True))


def rel_error(ref: np.ndarray, got: np.ndarray) -> float:
    """``max|got - ref| / max|ref|``; inf if the shapes differ or ``got`` is not finite where
    ``ref`` is.

    An all-zero reference is compared absolutely (the error is ``max|got|``).
    """
    ref = np.asarray(ref)
    got = np.asarray(got)
    if ref.shape != got.shape:
        return float("inf")
    if ref.size == 0:
        return 0.0
    if not np.issubdtype(ref.dtype, np.floating):
        return 0.0 if np.array_equal(ref, got) else float("inf")
    r = ref.astype(np.float64)
    g = got.astype(np.float64)
    finite = np.isfinite(r)
    if not np.array_equal(finite, np.isfinite(g)):
        return float("inf")
    if not finite.all():  # both non-finite at the same places: compare the rest, and infs by sign
        if not np.array_equal(r[~finite], g[~finite], equal_nan=True):
            return float("inf")
        r, g = r[finite], g[finite]
        if r.size == 0:
            return 0.0
    scale = float(np.max(np.abs(r)))
    diff = float(np.max(np.abs(g - r)))
    return diff / scale if scale > 0 else diff


@dataclass
class Comparison:
    """The outcome of comparing two runs' outputs."""

    per_output: dict[str, float] = field(default_factory=dict)

    @property
    def max_rel_err(self) -> float:
        return max(self.per_output.values(), default=0.0)

    @property
    def worst_output(self) -> str | None:
        if not self.per_output:
            return None
        return max(self.per_output, key=lambda k: (self.per_output[k], k))

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.max_rel_err))

    def ok(self, tolerance: float) -> bool:
        return self.max_rel_err <= tolerance


def compare(ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]) -> Comparison:
    """Compare two runs output by output (outputs are paired by position, since a pass may rename
    a graph output only by accident -- never silently)."""
    if len(ref) != len(got):
        return Comparison({"<output count>": float("inf")})
    result = Comparison()
    for (name, a), b in zip(ref.items(), got.values(), strict=True):
        result.per_output[name] = rel_error(a, b)
    return result


def sqnr_db(ref: np.ndarray, approx: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when ``approx`` equals ``ref`` exactly)."""
    r = np.asarray(ref, dtype=np.float64)
    noise = float(np.sum((r - np.asarray(approx, dtype=np.float64)) ** 2))
    signal = float(np.sum(r * r))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


def load_arrays(paths: Iterable[str | Path], specs: Sequence[InputSpec], *,
                label: str = "--calibration") -> list[dict[str, np.ndarray]]:
    """Read calibration inputs: each ``.npy`` file is one batch for the single model input, each
    ``.npz`` file maps input names to arrays; a directory contributes its .npy/.npz files in name
    order. Arrays whose batch differs from the model's are split or rejected with a clear error."""
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files.extend(sorted(f for f in path.iterdir() if f.suffix in (".npy", ".npz")))
        elif path.exists():
            files.append(path)
        else:
            raise InputError(f"{label}: {path}: no such file")
    if not files:
        raise InputError(f"{label}: no .npy or .npz files given")
    batches: list[dict[str, np.ndarray]] = []
    for f in files:
        try:
            data = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{label}: {f}: not a readable .npy/.npz file ({exc})") from exc
        if isinstance(data, np.ndarray):
            if len(specs) != 1:
                raise InputError(f"{label}: {f}: the model has {len(specs)} inputs; use .npz files "
                                 "keyed by input name")
            arrays = {specs[0].name: data}
        else:
            arrays = {k: data[k] for k in data.files}
        batch: dict[str, np.ndarray] = {}
        for spec in specs:
            if spec.name not in arrays:
                raise InputError(f"{label}: {f}: no array for input '{spec.name}'")
            arr = np.asarray(arrays[spec.name])
            if arr.shape[1:] == spec.shape[1:] and arr.ndim == len(spec.shape):
                pass
            elif arr.shape == spec.shape[1:]:
                arr = arr[None]
            else:
                raise InputError(f"{label}: {f}: array for '{spec.name}' has shape "
                                 f"{list(arr.shape)}, the model takes {list(spec.shape)}")
            batch[spec.name] = arr.astype(spec.dtype, copy=False)
        batches.append(batch)
    # Re-batch to the model's batch size (ORT needs the exact shape).
    out: list[dict[str, np.ndarray]] = []
    for batch in batches:
        n = next(iter(batch.values())).shape[0]
        want = specs[0].shape[0] if specs and specs[0].shape else 1
        for start in range(0, n, want):
            chunk = {k: v[start:start + want] for k, v in batch.items()}
            if next(iter(chunk.values())).shape[0] == want:
                out.append(chunk)
    if not out:
        raise InputError(f"{label}: fewer samples than the model's batch size "
                         f"{specs[0].shape[0] if specs else 1}")
    return out
