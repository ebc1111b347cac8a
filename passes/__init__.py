"""Lowering passes (installed as ``tilec.passes``): one pass per file, a registry and the pipeline.

A pass is a module with ``NAME``, ``SUMMARY`` (one line), ``EXACT`` (does it preserve the model's
function exactly?), a docstring stating the rewrite and its math, and ``run(graph, ctx)``, which
rewrites the graph in place and records every rewrite in ``ctx`` (kind, where, detail) and every
pattern it saw but left alone (with the reason). The pipeline adds the bookkeeping -- nodes and
parameters before/after, op counts, time -- and proves the passes with onnxruntime (see
:mod:`tilec.passes._verify`).

Entry points: :func:`run_pipeline`, :func:`names`, :func:`get`, :data:`REGISTRY`,
:func:`default_pipeline`.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import onnx_graphsurgeon as gs

from tilec.errors import InputError, InternalError
from tilec.ir import infer_shapes, toposort

from . import _graph
from ._precision import BITS, INT_PRECISIONS, PRECISIONS, PrecisionMap, check_precision
from ._precision import load as load_precision_map
from ._verify import MODES, Verifier, VerifyRecord

__all__ = [
    "BITS", "DEFAULT_PIPELINE", "INT_PRECISIONS", "MODES", "PRECISIONS", "REGISTRY", "Pass",
    "PassContext", "PassStats", "PrecisionMap", "Rewrite", "VerifyRecord", "default_pipeline",
    "get", "load_precision_map", "names", "run_pipeline",
]

_MODULES = ("canonicalize", "fold_bn", "fuse_repvgg", "fuse_activation", "quantize",
            "concat_in_place")

DEFAULT_PIPELINE = ("canonicalize", "fold-bn", "fuse-repvgg", "fuse-activation", "quantize",
                    "concat-in-place")
"""The full lowering pipeline in its natural order (targets name their own default)."""


@dataclass(frozen=True)
class Pass:
    """A registered pass."""

    name: str
    summary: str
    doc: str
    exact: bool
    module: ModuleType
    annotates_only: bool = False  # changes only tilec annotations: proved by structure, no ORT

    def run(self, graph: gs.Graph, ctx: PassContext) -> None:
        self.module.run(graph, ctx)


@dataclass(frozen=True)
class Rewrite:
    """One rewrite (or one pattern left alone): its kind, the nodes involved, a detail."""

    kind: str
    where: tuple[str, ...]
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "where": list(self.where), "detail": self.detail}


@dataclass
class PassStats:
    """What one pass did to the graph."""

    name: str
    nodes_before: int = 0
    nodes_after: int = 0
    params_before: int = 0
    params_after: int = 0
    ops_before: dict[str, int] = field(default_factory=dict)
    ops_after: dict[str, int] = field(default_factory=dict)
    rewrites: list[Rewrite] = field(default_factory=list)
    left: list[Rewrite] = field(default_factory=list)  # patterns seen but not rewritten, and why
    layers: list[dict[str, Any]] = field(default_factory=list)  # per-layer facts (quantize: SQNR)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    verify: VerifyRecord | None = None

    def counts(self) -> dict[str, int]:
        """Rewrites by kind."""
        out: dict[str, int] = {}
        for r in self.rewrites:
            out[r.kind] = out.get(r.kind, 0) + 1
        return dict(sorted(out.items()))

    def op_delta(self) -> dict[str, tuple[int, int]]:
        """Op types whose count changed: type -> (before, after)."""
        keys = sorted(set(self.ops_before) | set(self.ops_after))
        return {k: (self.ops_before.get(k, 0), self.ops_after.get(k, 0)) for k in keys
                if self.ops_before.get(k, 0) != self.ops_after.get(k, 0)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "nodes_before": self.nodes_before, "nodes_after": self.nodes_after,
            "params_before": self.params_before, "params_after": self.params_after,
            "op_delta": {k: list(v) for k, v in self.op_delta().items()},
            "counts": self.counts(), "rewrites": [r.to_dict() for r in self.rewrites],
            "left": [r.to_dict() for r in self.left], "layers": self.layers,
            "notes": self.notes, "seconds": round(self.seconds, 4),
            "verify": self.verify.to_dict() if self.verify else None,
        }


@dataclass
class PassContext:
    """What a pass may read (the compile options) and where it records what it did."""

    precision: str
    source: str = "model"
    precision_map: PrecisionMap | None = None
    calibration: list[dict[str, np.ndarray]] | None = None
    act_bits: Callable[[str], int] | None = None
    stats: PassStats = field(default_factory=lambda: PassStats("?"))
    role: str = "model"  # "model" or "probe" (the verification copy)
    memo: dict[Any, Any] = field(default_factory=dict)  # results shared by model and probe runs

    def rewrite(self, kind: str, where: Sequence[str] | str, detail: str = "") -> None:
        where = (where,) if isinstance(where, str) else tuple(where)
        self.stats.rewrites.append(Rewrite(kind, where, detail))

    def leave(self, kind: str, where: Sequence[str] | str, reason: str) -> None:
        where = (where,) if isinstance(where, str) else tuple(where)
        self.stats.left.append(Rewrite(kind, where, reason))

    def note(self, text: str) -> None:
        self.stats.notes.append(text)


def _load_registry() -> dict[str, Pass]:
    registry: dict[str, Pass] = {}
    for mod_name in _MODULES:
        module = importlib.import_module(f"{__name__}.{mod_name}")
        registry[module.NAME] = Pass(name=module.NAME, summary=module.SUMMARY,
                                     doc=(module.__doc__ or "").strip(), exact=module.EXACT,
                                     module=module,
                                     annotates_only=getattr(module, "ANNOTATES_ONLY", False))
    return registry


REGISTRY: Mapping[str, Pass] = _load_registry()
"""Pass name -> :class:`Pass`, in pipeline order."""


def names() -> list[str]:
    """Names of all passes, in their natural pipeline order."""
    return list(REGISTRY)


def get(name: str) -> Pass:
    """The pass called ``name``; an unknown name is an :class:`InputError` listing the names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(f"--passes: unknown pass '{name}' (passes: {', '.join(names())})"
                         ) from None


def default_pipeline() -> list[str]:
    return list(DEFAULT_PIPELINE)


def _snapshot(graph: gs.Graph) -> tuple[int, int, dict[str, int]]:
    counts = _graph.op_counts(graph)
    return len(graph.nodes), _graph.weight_params(graph), dict(sorted(counts.items()))


def fingerprint(graph: gs.Graph) -> tuple:
    """The graph as ONNX sees it -- ops, wiring, attributes, weights by identity -- without
    tilec's annotations and independent of node order. Equal fingerprints: the same function."""
    def attr(v: Any) -> str:
        return f"const@{id(v)}" if isinstance(v, gs.Constant) else repr(v)

    def tensor(t: gs.Tensor) -> tuple[str, int]:  # (no loading of lazily held weights)
        return (t.name, id(t._values) if isinstance(t, gs.Constant) else 0)

    nodes = sorted(
        (n.op, n.domain or "", tuple(tensor(t) for t in n.inputs),
         tuple(t.name for t in n.outputs),
         tuple(sorted((k, attr(v)) for k, v in n.attrs.items() if not k.startswith("tilec."))))
        for n in graph.nodes)
    return (tuple(t.name for t in graph.inputs), tuple(t.name for t in graph.outputs),
            tuple(nodes))


def _run_one(p: Pass, graph: gs.Graph, ctx: PassContext) -> PassStats:
    stats = PassStats(p.name)
    ctx.stats = stats
    stats.nodes_before, stats.params_before, stats.ops_before = _snapshot(graph)
    t0 = time.perf_counter()
    p.run(graph, ctx)
    if stats.rewrites:
        _graph.cleanup(graph)
        toposort(graph, source=ctx.source)
        infer_shapes(graph, source=ctx.source)
    stats.seconds = time.perf_counter() - t0
    stats.nodes_after, stats.params_after, stats.ops_after = _snapshot(graph)
    return stats


def run_pipeline(graph: gs.Graph, names: Sequence[str], *, precision: str,
                 precision_map: str | PrecisionMap | dict | None = None, source: str = "model",
                 verify: str = "pipeline",
                 probe: gs.Graph | Callable[[], gs.Graph | None] | None = None,
                 calibration: list[dict[str, np.ndarray]] | None = None,
                 act_bits: Callable[[str], int] | None = None, tolerance: float | None = None,
                 seed: int = 0, stride: int | None = None,
                 on_pass: Callable[[PassStats], None] | None = None,
                 summary: dict[str, Any] | None = None,
                 ) -> tuple[gs.Graph, list[PassStats]]:
    """Run the passes ``names`` on ``graph`` (modified in place and returned) and prove them.

    ``precision`` is the compile precision (fp32 | fp16 | int8 | int4 | int2) and
    ``precision_map`` an optional per-layer map (path, parsed map or dict); both are read by
    ``quantize``. ``verify`` is ``"pipeline"`` (each run of consecutive exact passes proved once,
    each lossy pass measured once -- the compile default), ``"pass"`` (every pass on its own) or
    ``"off"``. ``probe`` is the same model captured at a small size (batch 1), if the caller can
    provide it -- or a function making one, called only if re-shaping a copy of the graph (the
    default, see :mod:`tilec.passes._verify`) does not work.
    ``calibration`` are input batches for activation quantization; ``act_bits`` maps a precision
    to the activation storage bits the target uses at it (e.g. ``target.act_bits``; without it the
    integer precisions record their own width). ``stride`` (the network's total downsampling, if
    known) keeps the automatic probe size a multiple of it. ``on_pass`` is called after each pass.
    ``summary``, if given, receives the verification's totals: ``mode``, ``probe`` (input shapes),
    ``runs`` (onnxruntime runs), ``seconds`` (everything verification cost, probe passes
    included), ``checks`` (one dict per check) and ``notes``.

    Returns the graph and one :class:`PassStats` per pass. Raises :class:`InputError` for an
    unknown pass or precision, :class:`~tilec.errors.InternalError` if an exact pass changed the
    outputs.
    """
    passes = [get(n) for n in names]
    check_precision(precision, "--precision")
    pmap = load_precision_map(precision_map) if precision_map is not None else None
    ctx = PassContext(precision=precision, source=source, precision_map=pmap,
                      calibration=calibration, act_bits=act_bits)
    verifier = None
    if verify != "off" and passes:
        verifier = Verifier(graph, mode=verify, source=source, probe=probe, tolerance=tolerance,
                            seed=seed, stride=stride)
    probe_ctx = PassContext(precision=precision, source=f"{source} (probe)", precision_map=pmap,
                            calibration=None, act_bits=act_bits, role="probe", memo=ctx.memo)
    all_stats: list[PassStats] = []
    for p in passes:
        if verifier is not None and not p.exact:
            verifier.flush()  # prove the exact passes before a lossy one changes the probe
        before = fingerprint(graph) if verifier is not None and p.annotates_only else None
        names = ({n.name for n in graph.nodes}, {n.name for n in verifier.probe.nodes}) \
            if verifier is not None and not verifier.shared and not p.annotates_only else None
        stats = _run_one(p, graph, ctx)
        if before is not None:
            if fingerprint(graph) != before:
                raise InternalError(f"{source}: pass '{p.name}' should only annotate, but it "
                                    "changed the graph")
            if stats.rewrites:
                stats.verify = VerifyRecord(
                    scope=(p.name,), exact=True, max_rel_err=0.0, worst_output=None,
                    tolerance=verifier.tolerance, probe={}, seconds=0.0, method="structure")
        elif verifier is not None:
            t0 = time.perf_counter()
            if not verifier.shared:
                probe_stats = _run_one(p, verifier.probe, probe_ctx)
                verifier.check_decisions(stats, probe_stats, names)
            verifier.seconds += time.perf_counter() - t0
            verifier.after_pass(stats, p.exact)
        all_stats.append(stats)
        if on_pass is not None:
            on_pass(stats)
    if verifier is not None:
        verifier.flush(final=True)
        if all_stats:
            all_stats[0].notes.extend(verifier.notes)
            all_stats[-1].notes.append(
                f"verification ({verify}): {verifier.runs} onnxruntime run(s) at probe "
                f"{verifier.probe_shapes}, {verifier.seconds:.2f} s in all")
    if summary is not None:
        summary.update({
            "mode": verify,
            "probe": verifier.probe_shapes if verifier else None,
            "runs": verifier.runs if verifier else 0,
            "seconds": round(verifier.seconds, 4) if verifier else 0.0,
            "checks": [r.to_dict() for r in verifier.records] if verifier else [],
            "notes": list(verifier.notes) if verifier else [],
        })
    return graph, all_stats


def verification_seconds(stats: Sequence[PassStats]) -> float:
    """Total seconds spent in onnxruntime checks over ``stats`` (each check counted once)."""
    seen: dict[int, float] = {}
    for s in stats:
        if s.verify is not None:
            seen[id(s.verify)] = s.verify.seconds
    return sum(seen.values())
