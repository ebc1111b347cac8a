"""How much quantizing each layer costs the model's outputs: measured, or the entropy proxy.

**Measured** (``--sensitivity measured``, the default). The lowered float model (every exact pass
applied, before ``quantize``) is re-shaped to the passes' proof *probe* (batch 1, the first probe
size of :func:`tilec.passes._verify.probe_sizes` that onnxruntime runs) and instrumented once:
every layer's weight becomes a model input, and -- where the target stores activations below
16 bits (NorthPole) -- every layer's output passes through a switchable fake quantizer
``y + m (s round(clip(y / s, -q, q)) - y)`` whose scale ``s``, range ``q`` and switch ``m`` are
inputs too. One onnxruntime session then serves every question: the float reference (all
switches 0, float weights), one layer at a precision (its weight quantized exactly as the
``quantize`` pass does it, :func:`tilec.passes.quantize.quantize_rows`, and its activation switch
on), a whole per-layer map, or a uniform precision. Inputs are the proof's: seeded uniform
[-1, 1). The activation scale of a layer is the largest magnitude of its float output on that
input (per tensor, symmetric: the pass's calibration rule, with the probe input as calibration).

Recorded per layer and precision, over the model's outputs concatenated: the relative L2 error
``|y~ - y| / |y|`` and the max-abs error ``max|y~ - y|`` (and ``max|y~ - y| / max|y|``). The
knapsack's cost of a choice is the squared relative L2 -- the relative noise power, which adds up
over layers when their quantization errors are independent, so a sum of per-layer costs
estimates the mixed model's error; the mixed model is then measured, not estimated.

**Entropy** (``--sensitivity entropy``): the weight-entropy proxy of EAGL (entropy approximation
guided layer selection; named with ALPS on the NorthPole slides,
``../shared/seeds/northpole-hotchips-2023.txt``). Our reading: a layer's weights quantized at
the ceiling precision carry ``H`` bits of information per weight (the Shannon entropy of the
codes' histogram); at ``b`` bits they carry ``H_b``; the cost of the choice is ``H - H_b``, the
information the lower precision discards. No onnxruntime run, seconds for a large model.

The measured table is cached on disk (``$TILEC_CACHE_DIR/precision/<key>.json``) keyed by a
hash of the probe graph (structure and every weight's bytes), the precisions, the activation
widths, the seed and :data:`VERSION`: the second ``--precision auto`` on a model costs no
onnxruntime run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from tilec import numerics
from tilec.errors import InputError

VERSION = 1
"""Bump when the measurement changes: it is part of the cache key."""

SEED = 0
"""The inputs' seed (the proof's)."""

FLOAT = ("fp32", "fp16")


@dataclass(frozen=True)
class LayerRef:
    """One quantizable layer (an op with a float constant weight, as the quantize pass sees it)."""

    name: str
    op: str
    params: int
    role: str  # "first" | "last" | "" (passes/_precision.py's meaning)


def find_layers(graph: gs.Graph) -> tuple[list[LayerRef], dict[str, Any]]:
    """The layers of ``graph`` in graph order, and the quantize pass's view of each (by name)."""
    from tilec.passes.quantize import _ends, _layer

    found = {id(n): lay for n in graph.nodes if (lay := _layer(n)) is not None}
    first, last = _ends(graph, found)
    refs, by_name = [], {}
    for lay in found.values():
        n = lay.node
        role = "first" if n.name in first else ("last" if n.name in last else "")
        refs.append(LayerRef(n.name, n.op, int(math.prod(n.inputs[lay.index].shape)), role))
        by_name[n.name] = lay
    return refs, by_name


def bits_of(precision: str) -> int:
    from tilec.passes._precision import BITS

    return BITS[precision]


# ----------------------------------------------------------------------------- the instrument
@dataclass
class Error:
    """Output error of one quantized configuration against the float model."""

    rel_l2: float
    max_abs: float
    max_rel: float

    def to_dict(self) -> dict[str, float]:
        return {"rel_l2": _round(self.rel_l2), "max_abs": _round(self.max_abs),
                "max_rel": _round(self.max_rel)}


def _round(x: float) -> float:
    return float(f"{x:.6g}") if math.isfinite(x) else x


class Instrument:
    """The probe-sized float model, instrumented once, run under any per-layer precision map.

    ``act_bits(p)`` is the target's activation width at precision ``p``; a layer at ``p`` gets
    an activation fake quantizer only where that is below 16 bits."""

    def __init__(self, probe: gs.Graph, precisions: Sequence[str],
                 act_bits: Callable[[str], int], *, seed: int = SEED) -> None:
        from tilec.passes._graph import Names, replace_uses
        from tilec.passes._verify import materialize, runnable

        self.act_bits = act_bits
        self.precisions = list(precisions)
        self.act_quant = any(p not in FLOAT and int(act_bits(p)) < 16 for p in precisions)
        g = probe.copy()
        materialize(g)
        self.layers, lays = find_layers(g)
        names = Names(g)
        self.weights: dict[str, np.ndarray] = {}
        self.wname: dict[str, str] = {}
        self._lay = lays
        self._codes: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self.out_names = [t.name for t in g.outputs]
        self.act_out: dict[str, str] = {}
        self.switch: dict[str, tuple[str, str, str, str]] = {}
        outputs = {t.name for t in g.outputs}
        for ref in self.layers:
            lay = lays[ref.name]
            node = lay.node
            w = node.inputs[lay.index]
            arr = np.asarray(w.values, dtype=np.float32)
            var = gs.Variable(names(f"tilec_w/{ref.name}"), dtype=np.float32, shape=list(arr.shape))
            g.inputs.append(var)
            node.inputs[lay.index] = var
            self.weights[ref.name] = arr
            self.wname[ref.name] = var.name
            if not self.act_quant:
                continue
            y = node.outputs[0]
            scal = [gs.Variable(names(f"tilec_{k}/{ref.name}"), dtype=np.float32, shape=[])
                    for k in ("s", "lo", "hi", "m")]
            g.inputs.extend(scal)
            s, lo, hi, m = scal
            if y.name in outputs:
                pre = gs.Variable(names(f"{y.name}/float"), dtype=y.dtype, shape=y.shape)
                node.outputs[0] = pre
                src, dst = pre, y
            else:
                dst = gs.Variable(names(f"{y.name}/fq"), dtype=y.dtype, shape=y.shape)
                replace_uses(y, dst)
                src = y
            # y + m * (s * round(clip(y / s, lo, hi)) - y)
            t = [gs.Variable(names(f"{ref.name}/fq{i}"), dtype=y.dtype) for i in range(6)]
            steps = [("Div", [src, s], t[0]), ("Clip", [t[0], lo, hi], t[1]),
                     ("Round", [t[1]], t[2]), ("Mul", [t[2], s], t[3]),
                     ("Sub", [t[3], src], t[4]), ("Mul", [t[4], m], t[5]),
                     ("Add", [src, t[5]], dst)]
            for i, (op, ins, out) in enumerate(steps):
                g.nodes.append(gs.Node(op, name=names(f"{ref.name}/fq_{op.lower()}{i}"),
                                       inputs=ins, outputs=[out]))
            self.switch[ref.name] = (s.name, lo.name, hi.name, m.name)
            self.act_out[ref.name] = src.name
            g.outputs.append(src)
        g.toposort()
        model, feeds = runnable(g)
        self.feeds = feeds
        self.sess = numerics.session(model, quiet=True)
        skip = set(feeds) | {i.name for i in g.inputs if i.name not in
                             {t.name for t in probe.inputs}}
        self.inputs = numerics.random_inputs(self.sess, seed=seed, skip=skip)
        self.input_shapes = {k: list(v.shape) for k, v in self.inputs.items()}
        self.runs = 0
        self._zero = np.zeros((), np.float32)
        self._one = np.ones((), np.float32)
        self.amax: dict[str, float] = {}
        base = self._feeds({})
        want = self.out_names + list(self.act_out.values())
        values = self.sess.run(want, base)
        self.runs += 1
        self.ref = [np.asarray(v, np.float64) for v in values[: len(self.out_names)]]
        self.amax = {name: float(np.max(np.abs(v))) if v.size else 0.0
                     for name, v in zip(self.act_out, values[len(self.out_names):], strict=True)}
        if not all(np.isfinite(r).all() for r in self.ref):
            raise InputError("--precision auto: the float model's outputs are not finite on the "
                             "probe input; its sensitivity cannot be measured")
        self._ref_l2 = math.sqrt(sum(float(np.sum(r * r)) for r in self.ref))
        self._ref_max = max((float(np.max(np.abs(r))) for r in self.ref if r.size), default=0.0)

    def quantized_weight(self, layer: str, precision: str) -> np.ndarray:
        """``layer``'s weight as the quantize pass stores it at ``precision`` (dequantized)."""
        from tilec.passes.quantize import _from_rows

        w = self.weights[layer]
        if precision in FLOAT:
            return w
        lay = self._lay[layer]
        q, scale = self.codes(layer, precision)
        return _from_rows(q.astype(np.float32) * scale[:, None], w.shape, lay.node,
                          lay.axis).astype(np.float32)

    def codes(self, layer: str, precision: str) -> tuple[np.ndarray, np.ndarray]:
        """``layer``'s integer codes (channels x elements) and per-channel scales at integer
        ``precision``, as the quantize pass computes them -- once per layer and precision: the
        measurement evaluates many maps, and the entropy proxy reads the same codes
        (:func:`entropy`). The int8 codes are kept, a quarter of the float weight's bytes."""
        from tilec.passes.quantize import _channel_rows, quantize_rows

        key = (layer, precision)
        if key not in self._codes:
            lay = self._lay[layer]
            q, scale, _ = quantize_rows(_channel_rows(self.weights[layer], lay.node, lay.axis),
                                        bits_of(precision))
            self._codes[key] = (q, scale)
        return self._codes[key]

    def _feeds(self, choice: dict[str, str],
               weights: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        feeds = {**self.feeds, **self.inputs}
        for ref in self.layers:
            p = choice.get(ref.name)
            w = (weights or {}).get(ref.name)
            if w is None:
                w = self.weights[ref.name] if p is None else self.quantized_weight(ref.name, p)
            feeds[self.wname[ref.name]] = w
            if ref.name in self.switch:
                s, lo, hi, m = self.switch[ref.name]
                on = p is not None and p not in FLOAT and int(self.act_bits(p)) < 16
                qm = 2 ** (int(self.act_bits(p)) - 1) - 1 if on else 1
                a = self.amax.get(ref.name, 0.0)
                feeds[s] = np.array(a / qm if (on and a > 0) else 1.0, np.float32)
                feeds[lo] = np.array(-qm, np.float32)
                feeds[hi] = np.array(qm, np.float32)
                feeds[m] = self._one if on else self._zero
        return feeds

    def error(self, choice: dict[str, str]) -> Error:
        """Output error with the layers in ``choice`` at their precisions (the rest float)."""
        got = self.sess.run(self.out_names, self._feeds(choice))
        self.runs += 1
        num, worst = 0.0, 0.0
        for r, v in zip(self.ref, got, strict=True):
            d = np.asarray(v, np.float64) - r
            if not np.isfinite(d).all():
                return Error(float("inf"), float("inf"), float("inf"))
            num += float(np.sum(d * d))
            worst = max(worst, float(np.max(np.abs(d))) if d.size else 0.0)
        rel = math.sqrt(num) / self._ref_l2 if self._ref_l2 > 0 else math.sqrt(num)
        return Error(rel, worst, worst / self._ref_max if self._ref_max > 0 else worst)


# ----------------------------------------------------------------------------- the tables
@dataclass
class Sensitivity:
    """Per layer and precision, what quantizing that layer alone costs (``method``: "measured"
    values are :class:`Error` dicts; "entropy" values ``{"entropy_loss": bits}``)."""

    method: str
    precisions: list[str]  # candidates, highest first
    layers: list[LayerRef]
    values: dict[str, dict[str, dict[str, float]]]
    probe: dict[str, list[int]] = field(default_factory=dict)
    runs: int = 0
    seconds: float = 0.0
    cached: bool = False
    key: str = ""

    def cost(self, layer: str, precision: str) -> float:
        """The knapsack's cost of ``layer`` at ``precision`` (see the module docstring)."""
        v = self.values.get(layer, {}).get(precision)
        if v is None:
            return 0.0
        if self.method == "measured":
            x = float(v["rel_l2"])
            return x * x if math.isfinite(x) else 1e30
        return float(v["entropy_loss"])

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "precisions": self.precisions,
                "layers": [vars(r) for r in self.layers], "values": self.values,
                "probe": self.probe, "runs": self.runs, "key": self.key}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Sensitivity:
        return Sensitivity(method=data["method"], precisions=list(data["precisions"]),
                           layers=[LayerRef(**r) for r in data["layers"]],
                           values=data["values"], probe=data.get("probe", {}),
                           runs=int(data.get("runs", 0)), key=data.get("key", ""))


def measure(inst: Instrument, precisions: Sequence[str],
            progress: Callable[[str, float | None], None] | None = None) -> Sensitivity:
    """One onnxruntime run per layer and quantized precision (see the module docstring)."""
    t0 = time.perf_counter()
    runs0 = inst.runs
    values: dict[str, dict[str, dict[str, float]]] = {}
    lossy = [p for p in precisions if p not in FLOAT]
    total = max(1, len(inst.layers) * len(lossy))
    done = 0
    for ref in inst.layers:
        row: dict[str, dict[str, float]] = {}
        for p in precisions:
            if p in FLOAT:
                row[p] = Error(0.0, 0.0, 0.0).to_dict()  # the reference precision
                continue
            row[p] = inst.error({ref.name: p}).to_dict()
            done += 1
            if progress:
                progress("measuring layer sensitivity", done / total)
        values[ref.name] = row
    return Sensitivity("measured", list(precisions), list(inst.layers), values,
                       probe=inst.input_shapes, runs=inst.runs - runs0,
                       seconds=time.perf_counter() - t0)


def entropy_bits(codes: np.ndarray) -> float:
    """Shannon entropy in bits per element of an array of integer codes."""
    c = np.asarray(codes).astype(np.int64).ravel()
    counts = np.bincount(c - c.min()) if c.size else np.zeros(1, np.int64)
    counts = counts[counts > 0]
    p = counts / max(1, counts.sum())
    return float(-np.sum(p * np.log2(p)))


def entropy(graph: gs.Graph, precisions: Sequence[str],
            codes: Callable[[str, str], tuple[np.ndarray, np.ndarray]] | None = None
            ) -> Sensitivity:
    """EAGL's proxy (see the module docstring): ``H(ceiling) - H(p)`` bits per weight, the
    ceiling's codes taken at 8 bits when the ceiling is a float precision. ``codes(layer,
    precision)``: the layers' codes already computed for the same weights
    (:meth:`Instrument.codes`), instead of quantizing them again."""
    from tilec.passes.quantize import _channel_rows, quantize_rows

    t0 = time.perf_counter()
    layers, lays = find_layers(graph)
    top = precisions[0]
    values: dict[str, dict[str, dict[str, float]]] = {}
    for ref in layers:
        lay = lays[ref.name]
        rows = None
        h = {}
        for p in sorted({*(p for p in precisions if p not in FLOAT), "int8"}):
            if codes is not None:
                q = codes(ref.name, p)[0]
            else:
                if rows is None:
                    w = np.asarray(lay.node.inputs[lay.index].values, dtype=np.float32)
                    rows = _channel_rows(w, lay.node, lay.axis)
                q = quantize_rows(rows, bits_of(p))[0]
            h[p] = entropy_bits(q)
        h_top = h["int8"] if top in FLOAT else h[top]
        values[ref.name] = {p: {"entropy_bits": _round(h["int8"] if p in FLOAT else h[p]),
                                "entropy_loss": _round(max(0.0, h_top - (
                                    h_top if p in FLOAT else h[p])))}
                            for p in precisions}
    return Sensitivity("entropy", list(precisions), layers, values,
                       seconds=time.perf_counter() - t0)


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties get their average rank); None below 3 pairs or when
    either side is constant."""
    if len(a) != len(b) or len(a) < 3:
        return None

    def ranks(x: Sequence[float]) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x), np.float64)
        r[order] = np.arange(len(x), dtype=np.float64)
        for v in np.unique(x):  # average the ranks of ties
            idx = x == v
            if idx.sum() > 1:
                r[idx] = r[idx].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def rank_agreement(measured: Sensitivity, proxy: Sensitivity) -> dict[str, Any]:
    """How well the proxy ranks the layers against the measured errors: Spearman's rho per
    quantized precision (layers ranked by each table's cost of that precision)."""
    out: dict[str, Any] = {}
    names = [r.name for r in measured.layers]
    for p in measured.precisions:
        if p in FLOAT or p not in proxy.precisions:
            continue
        rho = spearman([proxy.cost(n, p) for n in names], [measured.cost(n, p) for n in names])
        out[p] = None if rho is None else round(rho, 4)
    return out


# ----------------------------------------------------------------------------- the cache
def graph_key(graph: gs.Graph, precisions: Sequence[str], act_bits: Callable[[str], int],
              seed: int = SEED) -> str:
    """SHA-256 over everything the measurement depends on (module docstring)."""
    from tilec.passes._verify import runnable

    digest = hashlib.sha256()
    model, feeds = runnable(graph)
    for init in model.graph.initializer:
        digest.update(init.SerializeToString())
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    del skeleton.graph.initializer[:]
    digest.update(skeleton.SerializeToString(deterministic=True))
    for name in sorted(feeds):
        arr = np.ascontiguousarray(feeds[name])
        digest.update(name.encode())
        digest.update(str(arr.dtype).encode())
        digest.update(str(arr.shape).encode())
        digest.update(arr.tobytes())
    meta = {"v": VERSION, "precisions": list(precisions), "seed": seed,
            "act_bits": {p: int(act_bits(p)) for p in precisions}}
    digest.update(json.dumps(meta, sort_keys=True).encode())
    return digest.hexdigest()


def cache_dir() -> Path:
    from tilec.zoo.cache import CACHE_ENV

    root = os.environ.get(CACHE_ENV)
    if root:
        base = Path(root).expanduser()
    else:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("tilec"))
    return base / "precision"


def load_cached(key: str) -> Sensitivity | None:
    path = cache_dir() / f"{key}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        table = Sensitivity.from_dict(data)
    except (KeyError, TypeError):
        return None
    table.cached = True
    return table


def store(table: Sensitivity) -> None:
    """Write atomically (a concurrent reader never sees half a file); a cache that cannot be
    written is only slower next time."""
    d = cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{table.key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(table.to_dict(), sort_keys=True))
        tmp.replace(d / f"{table.key}.json")
    except OSError:
        pass
