"""Reading and validating target descriptions (``targets/*.toml`` or a user's ``my-chip.toml``).

A target file is plain TOML, read with the standard library's :mod:`tomllib`. This module

* merges a file onto its ``[target] base`` (so ``bow.toml`` says only how Bow differs from GC200,
  and a user's what-if chip can start from a built-in one),
* checks every field against the schema below -- type, range, required, no unknown keys -- and
  reports the first problem as one :class:`~tilec.errors.InputError` line naming the file, the
  section and the field (``my-chip.toml: [memory] bytes_per_tile must be a positive integer, got
  -5``),
* keeps the comment written next to each field, because the comment is where a constant cites its
  source (``tilec targets show`` prints it).

The schema is data, not code, so ``tilec targets show`` can list every field with its meaning.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tilec.errors import InputError

KNOWN_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8", "int4", "int2")
"""Precisions a target may list (the same names ``tilec compile --precision`` accepts)."""

FAMILIES: tuple[str, ...] = ("ipu", "northpole")
"""Cost-model families: ``ipu`` (Poplar-style BSP; gc200, gc2, bow) and ``northpole``."""

BUILTIN_DIR = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------- field kinds
@dataclass(frozen=True)
class Field:
    """One field of the schema: its kind, whether it is required, and what it means."""

    kind: str
    doc: str
    required: bool = True
    choices: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()  # for maps: the allowed keys (empty: any key)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(float(v)))


# kind -> (predicate, phrase used in "must be ...")
_SCALAR_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "pos_int": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "nonneg_int": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "pos_num": (lambda v: _is_num(v) and v > 0, "a positive number"),
    "nonneg_num": (lambda v: _is_num(v) and v >= 0, "a non-negative number"),
    "fraction": (lambda v: _is_num(v) and 0 < v <= 1, "a number in (0, 1]"),
    "share": (lambda v: _is_num(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "str": (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str_list": (lambda v: isinstance(v, list) and all(isinstance(s, str) and s for s in v),
                 "a list of non-empty strings"),
    "grid": (lambda v: isinstance(v, list) and len(v) == 2 and all(_is_int(x) and x > 0 for x in v),
             "a list of two positive integers [rows, cols]"),
}
# map kinds: a TOML table whose values are all of the given scalar kind
_MAP_KINDS = {"pos_int_map": "pos_int", "pos_num_map": "pos_num", "nonneg_int_map": "nonneg_int",
              "str_map": "str"}


# ------------------------------------------------------------------------------------ schema
_TARGET = {
    "name": Field("str", "short name used on the command line (--target NAME)"),
    "description": Field("str", "one line describing the chip"),
    "cost_model": Field("choice", "which cost model costs ops on this chip", choices=FAMILIES),
    "placement": Field("choice", "how an op's tiles are chosen: contiguous tile ranges or mesh "
                                 "rectangles", choices=("range", "rect")),
    "base": Field("str", "a built-in target (or a TOML path) this file overrides", required=False),
}
_CHIP = {
    "tiles": Field("pos_int", "number of tiles (cores)"),
    "grid": Field("grid", "[rows, cols] arrangement; rows * cols must equal tiles"),
    "clock_hz": Field("pos_num", "core clock in Hz"),
    "threads_per_tile": Field("pos_int", "hardware threads (workers) per tile"),
}
_MEMORY_COMMON = {
    "bytes_per_tile": Field("pos_int", "SRAM bytes per tile"),
}
_PRECISION_COMMON = {
    "supported": Field("str_list", "precisions a model may be compiled at, highest first"),
    "default": Field("str", "precision used when --precision is not given"),
    "default_note": Field("str", "notice printed when the default precision is applied to a "
                                 "float model", required=False),
}
_PRECISION_ENTRY_IPU = {
    "weight_bits": Field("pos_int", "storage bits of weights compiled at this precision"),
    "act_bits": Field("pos_int", "storage bits of activations compiled at this precision"),
    "compute": Field("str", "the datapath that runs ops at this precision (a key of "
                            "[compute] macs_per_cycle)"),
    "partials_bits": Field("pos_int", "bits of convolution partial sums"),
}
_PRECISION_ENTRY_NP = {
    "weight_bits": Field("pos_int", "storage bits of weights compiled at this precision"),
    "act_bits": Field("pos_int", "storage bits of activations compiled at this precision"),
    "partials_bits": Field("pos_int", "bits of partial sums exchanged between cores"),
}
_PASSES = {
    "float": Field("str_list", "default lowering pipeline for float precisions"),
    "integer": Field("str_list", "default lowering pipeline for integer (quantized) precisions"),
}
_IO_COMMON = {
    "location": Field("choice", "where the model's inputs and outputs live: 'host' (streamed over "
                                "the host link into tile memory) or 'framebuffer' (an on-chip I/O "
                                "buffer outside tile memory)", choices=("host", "framebuffer")),
    "host_to_device_bytes_per_s": Field("pos_num", "host -> chip bandwidth"),
    "device_to_host_bytes_per_s": Field("pos_num", "chip -> host bandwidth"),
    "framebuffer_bytes": Field("nonneg_int", "bytes of the on-chip I/O buffer (0: none)"),
}
_STREAMING = {
    "bytes": Field("nonneg_num", "off-chip streaming memory (0: none); used by later features"),
    "bytes_per_s": Field("nonneg_num", "streaming memory bandwidth"),
}
_SPLITS = {
    "policy": Field("choice", "which splits the planner may choose from: 'fastest' (what a "
                              "compiler planning each op for speed picks, as Poplar does) or "
                              "'pareto' (the memory/speed trade-offs from one tile to the chip)",
                    choices=("fastest", "pareto")),
    "fastest_slack": Field("nonneg_num", "under 'fastest': splits within this fraction of the "
                                         "fastest count as equally fast"),
    "max_per_tile_count": Field("pos_int", "candidate splits kept per tile count (Pareto-best)"),
    "max_in_channel_split": Field("pos_int", "largest input-channel split factor tried"),
    "min_elements_per_tile": Field("pos_int", "smallest per-tile share an op is split into"),
}

_IPU_MEMORY = {
    **_MEMORY_COMMON,
    "bank_bytes": Field("pos_int", "memory bank size (informational)"),
}
_IPU_RESERVED = {
    "worker_stacks": Field("nonneg_int", "stack bytes of all worker threads"),
    "vertex_code_library": Field("nonneg_int", "codelet (vertex type) code, loaded once per tile"),
    "host_exchange": Field("nonneg_int", "host-exchange code and stream descriptors"),
}
_IPU_COMPUTE = {
    "macs_per_cycle": Field("pos_int_map", "matrix (AMP) MACs per cycle per tile, by datapath"),
    "in_channel_grain": Field("pos_int_map", "input channels the AMP consumes together"),
    "out_channel_grain": Field("pos_int_map", "output channels the AMP produces together"),
    "vector_lanes": Field("pos_int_map", "vector elements per cycle per tile, by datapath"),
    "copy_bytes_per_cycle": Field("pos_int", "bytes a tile copies per cycle"),
    "conv_efficiency": Field("fraction", "fraction of AMP peak a convolution sustains"),
    "nms_iterations": Field("pos_int", "loop iterations an on-device NonMaxSuppression is priced "
                                       "at (it stops when an image runs out of detections, so "
                                       "this is data-dependent; capped by its maximum output)",
                            required=False),
}
_IPU_ACTIVATIONS = {
    "native": Field("str_list", "activations with an in-place native implementation"),
    "nonnative_temps": Field("nonneg_int", "output-sized temporaries a non-native activation "
                                           "needs"),
}
_IPU_EXCHANGE = {
    "bytes_per_cycle_per_tile": Field("pos_num", "bytes a tile receives per cycle in exchange"),
    "superstep_cycles": Field("nonneg_int", "fixed cycles of one BSP superstep (sync, exchange "
                                            "start, vertex launch)"),
}
_IPU_OVERHEADS = {
    "bytes_per_compute_set": Field("nonneg_int", "always-live bytes per tile per compute set an "
                                                 "op runs there (control code + vertex state + "
                                                 "exchange code)"),
    "code_share": Field("share", "share of those bytes that is control code"),
    "state_share": Field("share", "share that is vertex state"),
    "exchange_share": Field("share", "share that is exchange code"),
}
_IPU_TEMPORARIES = {
    "available_memory_proportion": Field("fraction", "bound on a convolution's temporary bytes "
                                                     "per tile, as a share of the tile"),
}

_NP_MEMORY = {
    **_MEMORY_COMMON,
    "reserved_bytes_per_tile": Field("nonneg_int", "bytes per core the planner may not use"),
}
_NP_COMPUTE = {
    "vmm_macs_per_cycle": Field("pos_int_map", "matrix-unit MACs per cycle per core, by "
                                               "precision", keys=("int8", "int4", "int2")),
    "vector_ops_per_cycle": Field("pos_int", "vector-unit ops per cycle per core (fp16)"),
    "activation_ops_per_cycle": Field("pos_int", "activation-unit ops per cycle per core (fp16)"),
    "vmm_efficiency": Field("fraction", "fraction of matrix-unit peak a layer sustains"),
}
_NP_PROGRAM = {
    "layer_program_bytes": Field("pos_int", "bytes of one layer's program on each core running it"),
}
_NP_NOC = {
    "activation_bytes_per_cycle_per_core": Field("pos_num", "activation-NoC bytes a core "
                                                            "receives per cycle"),
    "model_bytes_per_cycle_per_core": Field("pos_num", "model-NoC (weight) bytes a core receives "
                                                       "per cycle"),
    "partial_sum_bytes_per_cycle_per_core": Field("pos_num", "partial-sum-NoC bytes a core "
                                                             "receives per cycle"),
    "layer_switch_cycles": Field("nonneg_int", "fixed cycles between two layers"),
}
_VECTOR_OPS = Field("pos_num_map", "vector instructions per element, by op type ('default' for "
                                   "the rest)")

SCHEMAS: dict[str, dict[str, Any]] = {
    "ipu": {
        "target": _TARGET, "chip": _CHIP, "memory": _IPU_MEMORY,
        "memory.reserved": _IPU_RESERVED,
        "precision": _PRECISION_COMMON, "precision.*": _PRECISION_ENTRY_IPU,
        "compute": _IPU_COMPUTE, "vector_ops": _VECTOR_OPS, "activations": _IPU_ACTIVATIONS,
        "exchange": _IPU_EXCHANGE, "overheads": _IPU_OVERHEADS,
        "overheads.compute_sets": Field("nonneg_int_map", "compute sets (supersteps) per op kind, "
                                                          "before per-op extras"),
        "temporaries": _IPU_TEMPORARIES, "passes": _PASSES, "io": _IO_COMMON,
        "streaming": _STREAMING, "splits": _SPLITS,
    },
    "northpole": {
        "target": _TARGET, "chip": _CHIP, "memory": _NP_MEMORY,
        "precision": _PRECISION_COMMON, "precision.*": _PRECISION_ENTRY_NP,
        "compute": _NP_COMPUTE, "vector_ops": _VECTOR_OPS, "program": _NP_PROGRAM,
        "noc": _NP_NOC, "passes": _PASSES, "io": _IO_COMMON, "streaming": _STREAMING,
        "splits": _SPLITS,
    },
}
"""Section -> fields (or a single map Field) per cost-model family. ``precision.*`` is one table
per supported precision."""

RANGES = "ranges"
"""The optional section of plausible ranges: ``"section.field" = [low, high]`` for a numeric
constant of any other section (``tilec compile`` checks its verdict over them: the band)."""

_RANGE_KINDS = ("pos_int", "nonneg_int", "pos_num", "nonneg_num", "fraction", "share")
"""Field kinds a range may be given for: the numeric ones."""


# ----------------------------------------------------------------------------- raw reading
@dataclass
class RawTarget:
    """A target file after base merging, before validation."""

    data: dict[str, Any]
    comments: dict[str, str]  # "section.key" -> source comment (own file wins over the base)
    origin: dict[str, str]  # "section.key" -> label of the file that set the value
    label: str  # how errors name the file
    path: Path
    chain: list[str] = field(default_factory=list)  # labels, this file first, then its bases


def _strip_comment(line: str) -> tuple[str, str]:
    """Split a TOML line into (code, comment), ignoring '#' inside strings."""
    quote: str | None = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i], line[i + 1:].strip()
        i += 1
    return line, ""


def extract_comments(text: str) -> dict[str, str]:
    """Map ``"section.key"`` to the comment that documents it.

    A key's comment is its trailing comment, else the block of full-line comments directly above
    it, else a trailing comment on a continuation line of a multi-line value. A section header's
    comment (trailing, the block above it, or the block between it and its first key) is stored
    under ``"section"`` and covers keys without one of their own. Inline tables share their key's
    comment.
    """
    comments: dict[str, str] = {}
    section = ""
    pending: list[str] = []
    current_key: str | None = None  # key whose multi-line value is still open
    depth = 0
    first_key = False
    for raw in text.splitlines():
        code, comment = _strip_comment(raw)
        stripped = code.strip()
        if depth > 0 and current_key is not None:
            depth += stripped.count("[") + stripped.count("{")
            depth -= stripped.count("]") + stripped.count("}")
            if comment and not comments.get(current_key):
                comments[current_key] = comment
            if depth <= 0:
                depth, current_key = 0, None
            continue
        if not stripped:
            if comment:
                pending.append(comment)
            else:
                pending = []
            continue
        if stripped.startswith("["):
            section = stripped.strip("[] ")
            first_key = True
            text_c = comment or " ".join(pending)
            if text_c:
                comments[section] = text_c
            pending = []
            continue
        if "=" in stripped:
            key = stripped.split("=", 1)[0].strip().strip('"').strip("'")
            full = f"{section}.{key}" if section else key
            comments[full] = comment or " ".join(pending)
            if first_key and pending and section and not comments.get(section):
                comments[section] = " ".join(pending)  # a block under a header covers the table
            first_key = False
            value = stripped.split("=", 1)[1]
            depth = (value.count("[") + value.count("{")) - (value.count("]") + value.count("}"))
            current_key = full if depth > 0 else None
            pending = []
    return {k: v for k, v in comments.items() if v}


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (tables only; lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: tables merge key by key, anything else in ``over`` replaces the base value."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def builtin_path(name: str) -> Path | None:
    """The TOML file of a built-in target, or None."""
    p = BUILTIN_DIR / f"{name}.toml"
    return p if p.is_file() else None


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def read_raw(path: Path, label: str, _seen: tuple[str, ...] = ()) -> RawTarget:
    """Read a target file and merge it onto its base chain (no validation yet)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{label}: no such target file") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 by definition
        raise InputError(f"{label}: not a UTF-8 text file (byte {exc.start}: "
                         f"{exc.object[exc.start:exc.start + 1]!r}); TOML must be UTF-8") from None
    except OSError as exc:
        raise InputError(f"{label}: cannot read target file ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{label}: invalid TOML: {exc}") from None
    comments = extract_comments(text)
    origin = dict.fromkeys(_flatten(data), label)
    target = data.get("target")
    base_name = target.get("base") if isinstance(target, dict) else None
    if base_name is None:
        return RawTarget(data, comments, origin, label, path, [label])
    if not isinstance(base_name, str) or not base_name.strip():
        raise InputError(f"{label}: [target] base must be a non-empty string, got {base_name!r}")
    resolved = str(path.resolve())
    if resolved in _seen:
        raise InputError(f"{label}: [target] base '{base_name}' makes a cycle")
    base_path = builtin_path(base_name)
    base_label = f"{base_name}.toml"
    if base_path is None:
        candidate = Path(base_name)
        if not candidate.is_absolute():
            candidate = path.parent / candidate
        if not candidate.is_file():
            raise InputError(f"{label}: [target] base '{base_name}' is neither a built-in target "
                             f"({', '.join(builtin_names())}) nor a TOML file")
        base_path, base_label = candidate, str(base_name)
    base = read_raw(base_path, base_label, (*_seen, resolved))
    base_data = dict(base.data)
    base_target = dict(base_data.get("target", {}))
    base_target.pop("base", None)  # the base's own base is already merged in
    base_data["target"] = base_target
    merged = _merge(base_data, data)
    # A section the override rewrites keeps the base's comments for keys it does not set.
    merged_comments = {**base.comments, **comments}
    merged_origin = {**base.origin, **origin}
    return RawTarget(merged, merged_comments, merged_origin, label, path, [label, *base.chain])


# ------------------------------------------------------------------------------- validation
def _fmt(v: Any) -> str:
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, dict):
        return "a table"
    return str(v).replace("True", "true").replace("False", "false")


def _check_scalar(label: str, where: str, key: str, f: Field, value: Any) -> Any:
    if f.kind == "choice":
        if value not in f.choices:
            raise InputError(f"{label}: {where} {key} must be one of "
                             f"{', '.join(repr(c) for c in f.choices)}, got {_fmt(value)}")
        return value
    pred, phrase = _SCALAR_KINDS[f.kind]
    if not pred(value):
        raise InputError(f"{label}: {where} {key} must be {phrase}, got {_fmt(value)}")
    if f.kind in ("pos_num", "nonneg_num", "fraction", "share"):
        return float(value)
    if f.kind == "str_list":
        return list(value)
    return value


def _check_map(label: str, where: str, f: Field, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{label}: {where} must be a table, got {_fmt(value)}")
    item = Field(_MAP_KINDS[f.kind], f.doc)
    out = {}
    for k in value:  # file order: deterministic, and the order the author chose
        if f.keys and k not in f.keys:
            raise InputError(f"{label}: {where} has unknown key '{k}' "
                             f"(allowed: {', '.join(f.keys)})")
        out[k] = _check_scalar(label, where, k, item, value[k])
    return out


def _check_table(label: str, section: str, schema: Mapping[str, Field], table: Any,
                 ignore: frozenset[str] = frozenset()) -> dict[str, Any]:
    where = f"[{section}]"
    if not isinstance(table, dict):
        raise InputError(f"{label}: {where} must be a table, got {_fmt(table)}")
    for key in sorted(table):
        if key not in schema and key not in ignore:
            raise InputError(f"{label}: {where} has unknown field '{key}' "
                             f"(known: {', '.join(sorted(schema))})")
    out: dict[str, Any] = {}
    for key, f in schema.items():
        if key not in table:
            if f.required:
                raise InputError(f"{label}: {where} {key} is missing ({f.doc})")
            continue
        if f.kind in _MAP_KINDS:
            out[key] = _check_map(label, f"{where} {key}", f, table[key])
        else:
            out[key] = _check_scalar(label, where, key, f, table[key])
    return out


def validate(raw: RawTarget) -> dict[str, Any]:
    """Check ``raw`` against its family's schema and the cross-field rules; return clean data.

    Every error names the file and the field; the first error found is raised.
    """
    label, data = raw.label, raw.data
    target = data.get("target")
    if not isinstance(target, dict):
        raise InputError(f"{label}: [target] section is missing")
    family = target.get("cost_model")
    if family not in FAMILIES:
        raise InputError(f"{label}: [target] cost_model must be one of "
                         f"{', '.join(repr(f) for f in FAMILIES)}, got {_fmt(family)}")
    schema = SCHEMAS[family]
    top_sections = {s.split(".")[0] for s in schema} | {RANGES}
    for section in sorted(data):
        if section not in top_sections:
            raise InputError(f"{label}: unknown section [{section}] for a '{family}' target "
                             f"(known: {', '.join(sorted(top_sections))})")
    clean: dict[str, Any] = {}
    for section, spec in schema.items():
        if section == "precision.*":
            continue
        parts = section.split(".")
        table: Any = data
        for p in parts:
            table = table.get(p) if isinstance(table, dict) else None
        if isinstance(spec, Field):  # a whole section that is one map
            if table is None:
                if spec.required:
                    raise InputError(f"{label}: [{section}] is missing ({spec.doc})")
                continue
            value = _check_map(label, f"[{section}]", spec, table)
        else:
            if table is None:
                raise InputError(f"{label}: [{section}] section is missing")
            # sub-tables declared in the schema are checked on their own
            subs = frozenset(s.split(".", 1)[1] for s in schema if s.startswith(section + ".")
                             and s.count(".") == section.count(".") + 1)
            if section == "precision":
                subs = frozenset(k for k, v in table.items() if isinstance(v, dict))
            value = _check_table(label, section, spec, table, ignore=subs)
        node = clean
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node.setdefault(parts[-1], {}).update(value)
    _check_precisions(label, data, clean, schema["precision.*"])
    _cross_checks(label, family, clean)
    ranges = check_ranges(label, family, data.get(RANGES, {}), clean, raw.origin, raw.chain)
    if ranges:
        clean[RANGES] = ranges
    return clean


def _check_precisions(label: str, data: dict[str, Any], clean: dict[str, Any],
                      entry: Mapping[str, Field]) -> None:
    prec = clean["precision"]
    supported = prec["supported"]
    if not supported:
        raise InputError(f"{label}: [precision] supported must list at least one precision")
    for p in supported:
        if p not in KNOWN_PRECISIONS:
            raise InputError(f"{label}: [precision] supported has unknown precision '{p}' "
                             f"(known: {', '.join(KNOWN_PRECISIONS)})")
    if len(set(supported)) != len(supported):
        raise InputError(f"{label}: [precision] supported lists a precision twice")
    order = [p for p in KNOWN_PRECISIONS if p in supported]
    if order != supported:
        raise InputError(f"{label}: [precision] supported must be ordered highest first "
                         f"({', '.join(order)}), got {', '.join(supported)}")
    if prec["default"] not in supported:
        raise InputError(f"{label}: [precision] default must be one of the supported precisions "
                         f"({', '.join(supported)}), got {_fmt(prec['default'])}")
    raw_prec = data["precision"]
    for p in sorted(k for k, v in raw_prec.items() if isinstance(v, dict)):
        if p not in supported:
            raise InputError(f"{label}: [precision.{p}] describes a precision that [precision] "
                             f"supported does not list")
    for p in supported:
        if not isinstance(raw_prec.get(p), dict):
            raise InputError(f"{label}: [precision.{p}] section is missing (every supported "
                             f"precision needs its bit widths)")
        prec[p] = _check_table(label, f"precision.{p}", entry, raw_prec[p])
        for key in ("weight_bits", "act_bits", "partials_bits"):
            bits = prec[p][key]
            if bits not in (2, 4, 8, 16, 32):
                raise InputError(f"{label}: [precision.{p}] {key} must be 2, 4, 8, 16 or 32, "
                                 f"got {bits}")


def _cross_checks(label: str, family: str, c: dict[str, Any]) -> None:
    chip, mem = c["chip"], c["memory"]
    rows, cols = chip["grid"]
    if rows * cols != chip["tiles"]:
        raise InputError(f"{label}: [chip] grid {rows} x {cols} = {rows * cols} does not equal "
                         f"tiles = {chip['tiles']}")
    if family == "ipu":
        reserved = sum(mem["reserved"].values())
        comp = c["compute"]
        for p in c["precision"]["supported"]:
            dp = c["precision"][p]["compute"]
            for key in ("macs_per_cycle", "in_channel_grain", "out_channel_grain",
                        "vector_lanes"):
                if dp not in comp[key]:
                    raise InputError(f"{label}: [precision.{p}] compute = '{dp}' but [compute] "
                                     f"{key} has no '{dp}' entry")
        shares = sum(c["overheads"][k] for k in ("code_share", "state_share", "exchange_share"))
        if abs(shares - 1.0) > 1e-6:
            raise InputError(f"{label}: [overheads] code_share + state_share + exchange_share "
                             f"must be 1, got {shares:g}")
        kinds = ("conv", "matmul", "pool", "elementwise", "concat", "resize", "movement",
                 "reduce")
        for k in kinds:
            if k not in c["overheads"]["compute_sets"]:
                raise InputError(f"{label}: [overheads.compute_sets] {k} is missing")
    else:
        reserved = mem["reserved_bytes_per_tile"]
        for p in c["precision"]["supported"]:
            if p not in c["compute"]["vmm_macs_per_cycle"]:
                raise InputError(f"{label}: [compute] vmm_macs_per_cycle has no '{p}' entry "
                                 f"but [precision] supports {p}")
        if c["target"]["placement"] != "rect":
            raise InputError(f"{label}: [target] placement must be 'rect' for a northpole "
                             f"target, got '{c['target']['placement']}'")
    if reserved >= mem["bytes_per_tile"]:
        raise InputError(f"{label}: reserved bytes per tile ({reserved}) must be less than "
                         f"[memory] bytes_per_tile ({mem['bytes_per_tile']})")
    io = c["io"]
    if io["location"] == "framebuffer" and io["framebuffer_bytes"] == 0:
        raise InputError(f"{label}: [io] framebuffer_bytes must be positive when [io] location "
                         f"is 'framebuffer'")


# ------------------------------------------------------------------------------ ranges (band)
def range_field(family: str, dotted: str) -> Field | None:
    """The schema field a dotted name (``"overheads.bytes_per_compute_set"``,
    ``"memory.reserved.vertex_code_library"``, ``"vector_ops.Mish"``,
    ``"compute.macs_per_cycle.fp16"``) designates, as a scalar Field; None if there is none."""
    schema = SCHEMAS[family]
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        section, rest = ".".join(parts[:i]), parts[i:]
        spec = schema.get(section)
        if spec is None:
            continue
        if isinstance(spec, Field):  # a section that is one map: rest is one key of it
            return Field(_MAP_KINDS[spec.kind], spec.doc) if len(rest) == 1 else None
        f = spec.get(rest[0])
        if f is None:
            return None
        if f.kind in _MAP_KINDS:
            return Field(_MAP_KINDS[f.kind], f.doc) if len(rest) == 2 else None
        return f if len(rest) == 1 else None
    return None


def get_field(spec: Mapping[str, Any], dotted: str) -> Any:
    """The value of ``dotted`` in a validated spec (None when absent). Section names may
    themselves contain dots (``memory.reserved``), so the path is walked table by table."""
    cur: Any = spec
    for p in dotted.split("."):
        if not isinstance(cur, Mapping) or p not in cur:
            return None
        cur = cur[p]
    return cur


def set_field(spec: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``dotted`` in a validated spec (in place); the path must exist."""
    parts = dotted.split(".")
    cur: Any = spec
    for p in parts[:-1]:
        cur = cur[p]
    cur[parts[-1]] = value


def check_value(label: str, family: str, dotted: str, value: Any) -> Any:
    """``value`` checked against the kind of field ``dotted`` (ints stay ints, numbers become
    floats), or an InputError naming the file and the field."""
    f = range_field(family, dotted)
    if f is None or f.kind not in _RANGE_KINDS:
        raise InputError(f"{label}: {dotted} is not a numeric field of a '{family}' target")
    return _check_scalar(label, "", dotted, f, value)


def check_spec(label: str, spec: dict[str, Any]) -> None:
    """The cross-field rules on a validated spec whose values were changed (a band probe)."""
    _cross_checks(label, spec["target"]["cost_model"], spec)


def check_ranges(label: str, family: str, table: Any, clean: dict[str, Any],
                 origin: Mapping[str, str], chain: list[str] | None = None
                 ) -> dict[str, list[Any]]:
    """Validate ``[ranges]``: each key a numeric field of the schema that the target sets, each
    value ``[low, high]`` of that field's kind with ``low <= nominal <= high``, and each end on
    its own still a valid target (cross-field rules). ``[]`` removes a range a base file gave.
    Returns ``{dotted: [low, high]}`` in file order (base entries first).

    A range travels with the value it surrounds: when a file sets a constant that a *base* file
    gave the range for (``chain``: this file first, then its bases), the base's range is dropped
    -- it described the base's value, not this one -- and the constant is exact here unless this
    file (or a file between) gives it a range of its own."""
    depth = {lab: i for i, lab in enumerate(chain or [])}
    where = f"[{RANGES}]"
    if not isinstance(table, dict):
        raise InputError(f"{label}: {where} must be a table, got {_fmt(table)}")
    out: dict[str, list[Any]] = {}
    for key, value in table.items():
        if isinstance(value, dict):  # `[ranges.overheads]` tables instead of quoted keys
            raise InputError(f"{label}: {where} {key}: write each range as a quoted dotted key, "
                             f'e.g. "{key}.FIELD" = [low, high]')
        f = range_field(family, key)
        if f is None:
            raise InputError(f"{label}: {where} '{key}' is not a field of a '{family}' target "
                             f"(write the dotted name, e.g. 'overheads.bytes_per_compute_set')")
        if f.kind not in _RANGE_KINDS:
            raise InputError(f"{label}: {where} '{key}' is not a numeric field (it is "
                             f"{f.kind}); only numeric constants take a range")
        nominal = get_field(clean, key)
        if nominal is None:
            raise InputError(f"{label}: {where} '{key}' names a field this target does not set")
        if isinstance(value, list) and not value:
            continue  # "no range": a custom target drops one its base gave
        set_in, range_in = origin.get(key), origin.get(f"{RANGES}.{key}")
        if (set_in in depth and range_in in depth and depth[set_in] < depth[range_in]):
            continue  # the value was overridden after the range was given: the range is stale
        if not (isinstance(value, list) and len(value) == 2):
            raise InputError(f"{label}: {where} {key} must be [low, high] (or [] for no range), "
                             f"got {_fmt(value)}")
        ends = [_check_scalar(label, where, f"{key} low", f, value[0]),
                _check_scalar(label, where, f"{key} high", f, value[1])]
        low, high = ends
        if not low <= nominal <= high:
            src = origin.get(f"{RANGES}.{key}", label)
            raise InputError(f"{label}: {where} {key} = [{_fmt(value[0])}, {_fmt(value[1])}] "
                             f"(from {src}) must satisfy low <= value <= high, but the value is "
                             f"{_fmt(nominal)} (from {origin.get(key, label)}); give a range "
                             f"that holds it")
        for name, end in (("low", low), ("high", high)):
            probe = _deep_copy(clean)
            set_field(probe, key, end)
            try:
                _cross_checks(label, family, probe)
            except InputError as exc:
                raise InputError(f"{label}: {where} {key}: the {name} end {_fmt(end)} makes an "
                                 f"invalid target ({str(exc).removeprefix(label + ': ')})"
                                 ) from None
        out[key] = ends
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data
