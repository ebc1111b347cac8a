"""A loaded target: the chip's description plus its cost model (the ``tilec.costmodel.Target``).

The object keeps the whole validated description (``spec``) and the source comment of every field
(``comments``), so ``tilec targets show`` and reports can print any constant together with where it
comes from.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from tilec.costmodel import CostModel
from tilec.errors import InputError

from .spec import KNOWN_PRECISIONS, RANGES, check_spec, check_value, get_field, set_field

_FLOAT_BITS = 16  # at or above this width a precision is a float format (fp16, fp32)


@dataclass(frozen=True, eq=False)
class TileTarget:
    """A tiled-SRAM chip (implements :class:`tilec.costmodel.Target`)."""

    name: str
    tiles: int
    bytes_per_tile: int
    reserved_bytes_per_tile: int
    grid: tuple[int, int]
    placement: Literal["range", "rect"]
    clock_hz: float
    precisions: tuple[str, ...]
    default_precision: str
    spec: dict[str, Any] = field(repr=False)
    comments: dict[str, str] = field(default_factory=dict, repr=False)
    origin: dict[str, str] = field(default_factory=dict, repr=False)
    source: str = ""  # how the user named the file (or the built-in name)
    chain: tuple[str, ...] = ()  # this file, then its bases
    cost_model: CostModel = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.family == "ipu":
            from .ipu import IpuCostModel

            model: CostModel = IpuCostModel(self)
        else:
            from .northpole import NorthPoleCostModel

            model = NorthPoleCostModel(self)
        object.__setattr__(self, "cost_model", model)

    # --------------------------------------------------------------------- construction
    @staticmethod
    def from_spec(spec: dict[str, Any], *, comments: dict[str, str] | None = None,
                  origin: dict[str, str] | None = None, source: str = "",
                  chain: tuple[str, ...] = ()) -> TileTarget:
        mem = spec["memory"]
        if spec["target"]["cost_model"] == "ipu":
            reserved = sum(mem["reserved"].values())
        else:
            reserved = mem["reserved_bytes_per_tile"]
        return TileTarget(
            name=spec["target"]["name"], tiles=spec["chip"]["tiles"],
            bytes_per_tile=mem["bytes_per_tile"], reserved_bytes_per_tile=int(reserved),
            grid=(spec["chip"]["grid"][0], spec["chip"]["grid"][1]),
            placement=spec["target"]["placement"], clock_hz=float(spec["chip"]["clock_hz"]),
            precisions=tuple(spec["precision"]["supported"]),
            default_precision=spec["precision"]["default"], spec=spec,
            comments=dict(comments or {}), origin=dict(origin or {}), source=source, chain=chain,
        )

    # ------------------------------------------------------------------------ protocol
    @property
    def budget_per_tile(self) -> int:
        """Bytes of a tile the planner may fill (bytes_per_tile - reserved_bytes_per_tile)."""
        return max(0, self.bytes_per_tile - self.reserved_bytes_per_tile)

    def _entry(self, precision: str) -> dict[str, Any]:
        if precision not in self.precisions:
            known = ", ".join(KNOWN_PRECISIONS)
            hint = (f"supported: {', '.join(self.precisions)}" if precision in KNOWN_PRECISIONS
                    else f"known precisions: {known}")
            raise InputError(f"target '{self.name}' does not support precision '{precision}' "
                             f"({hint})")
        return self.spec["precision"][precision]

    def weight_bits(self, precision: str) -> int:
        """Storage bits of float weights compiled at ``precision``."""
        return int(self._entry(precision)["weight_bits"])

    def act_bits(self, precision: str) -> int:
        """Storage bits of activations compiled at ``precision``."""
        return int(self._entry(precision)["act_bits"])

    def default_passes(self, precision: str) -> list[str]:
        """The target's pipeline: the integer one (with ``quantize``) for low-bit weights."""
        key = "integer" if self.weight_bits(precision) < _FLOAT_BITS else "float"
        return list(self.spec["passes"][key])

    def with_bytes_per_tile(self, bytes_per_tile: int) -> TileTarget:
        """The same chip with another SRAM size per tile (for "how much SRAM would it need").

        Everything else stays, including the reserved bytes and the temporary-memory proportion
        (which therefore scales with the tile, as Poplar's availableMemoryProportion does).
        """
        if isinstance(bytes_per_tile, bool) or not isinstance(bytes_per_tile, int) \
                or bytes_per_tile <= 0:
            raise InputError(f"bytes per tile must be a positive integer, got {bytes_per_tile!r}")
        spec = copy.deepcopy(self.spec)
        spec["memory"]["bytes_per_tile"] = bytes_per_tile
        origin = {**self.origin, "memory.bytes_per_tile": "what-if"}
        comments = {**self.comments,
                    "memory.bytes_per_tile": f"what-if: {self.name} with {bytes_per_tile:,} B "
                                             f"per tile instead of {self.bytes_per_tile:,}"}
        return TileTarget.from_spec(spec, comments=comments, origin=origin, source=self.source,
                                    chain=self.chain)

    def with_values(self, values: dict[str, Any], *, why: str = "band") -> TileTarget:
        """The same chip with some numeric constants changed: ``{"overheads.bytes_per_compute_set":
        300, ...}`` (dotted names as in ``[ranges]``). Each value is checked against its field's
        kind and the result against the cross-field rules (an InputError names the field).

        The derived target keeps the name (reports stay comparable) but not the ranges: it is one
        point of the band, not a description with its own uncertainty. Its cost model prices
        from scratch (prices are cached by the whole description, so nothing stale is reused).
        """
        label = f"{self.source or self.name} ({why})"
        spec = copy.deepcopy(self.spec)
        spec.pop(RANGES, None)
        origin, comments = dict(self.origin), dict(self.comments)
        for key, value in values.items():
            if get_field(spec, key) is None:
                raise InputError(f"{label}: {key} is not a field this target sets")
            clean = check_value(label, self.family, key, value)
            set_field(spec, key, clean)
            origin[key] = why
            comments[key] = f"{why}: {clean} instead of {get_field(self.spec, key)}"
        check_spec(label, spec)
        return TileTarget.from_spec(spec, comments=comments, origin=origin, source=self.source,
                                    chain=self.chain)

    @property
    def ranges(self) -> dict[str, tuple[Any, Any]]:
        """Plausible ``(low, high)`` of the constants the file gives a range (``[ranges]``), in
        file order; constants with ``low == high`` are exact and left out."""
        return {k: (v[0], v[1]) for k, v in self.spec.get(RANGES, {}).items() if v[0] != v[1]}

    def value(self, dotted: str) -> Any:
        """The value of a dotted field (``"exchange.superstep_cycles"``), None if not set."""
        return get_field(self.spec, dotted)

    # ------------------------------------------------------------------------- extras
    @property
    def family(self) -> str:
        """Cost-model family: "ipu" or "northpole"."""
        return self.spec["target"]["cost_model"]

    @property
    def description(self) -> str:
        return self.spec["target"]["description"]

    @property
    def total_bytes(self) -> int:
        """SRAM over the whole chip."""
        return self.tiles * self.bytes_per_tile

    @property
    def io_location(self) -> str:
        """"host": inputs/outputs are tensors in tile memory streamed over the host link;
        "framebuffer": they live in an on-chip I/O buffer outside tile memory (NorthPole)."""
        return self.spec["io"]["location"]

    @property
    def framebuffer_bytes(self) -> int:
        """Size of the on-chip I/O buffer (0: none). On NorthPole the model's inputs plus outputs
        must fit in it (``cost_model.io_bytes(graph)``)."""
        return int(self.spec["io"]["framebuffer_bytes"])

    @property
    def default_precision_note(self) -> str | None:
        """The notice to show when the default precision is applied to a float model."""
        return self.spec["precision"].get("default_note")

    @property
    def streaming_bytes(self) -> float:
        return float(self.spec["streaming"]["bytes"])

    @property
    def streaming_bytes_per_s(self) -> float:
        return float(self.spec["streaming"]["bytes_per_s"])

    def compute_datapath(self, precision: str) -> str:
        """The datapath that runs ops compiled at ``precision`` ("fp16", "fp32", "int8", ...)."""
        entry = self._entry(precision)
        return str(entry.get("compute", precision))

    def peak_macs_per_cycle(self, precision: str) -> int:
        """Matrix-unit MACs per cycle per tile at ``precision``."""
        dp = self.compute_datapath(precision)
        comp = self.spec["compute"]
        table = comp.get("macs_per_cycle") or comp.get("vmm_macs_per_cycle")
        return int(table[dp])

    def peak_macs_per_s(self, precision: str | None = None) -> float:
        """Chip-wide peak MAC/s at ``precision`` (default: the default precision)."""
        p = precision or self.default_precision
        return self.tiles * self.peak_macs_per_cycle(p) * self.clock_hz

    def comment(self, key: str) -> str:
        """The source comment of ``"section.key"`` (or of its table when the key has none)."""
        if key in self.comments:
            return self.comments[key]
        parts = key.split(".")
        while len(parts) > 1:
            parts.pop()
            parent = ".".join(parts)
            if parent in self.comments:
                return self.comments[parent]
        return ""

    def rows(self) -> list[tuple[str, str, Any, str, str]]:
        """Every field as (section, key, value, source comment, file that set it), in schema
        order -- what ``tilec targets show`` prints."""
        from .spec import SCHEMAS, Field

        out: list[tuple[str, str, Any, str, str]] = []
        schema = SCHEMAS[self.family]

        def node(path: str) -> Any:
            cur: Any = self.spec
            for p in path.split("."):
                cur = cur.get(p) if isinstance(cur, dict) else None
            return cur

        def add(section: str, key: str, value: Any) -> None:
            full = f"{section}.{key}"
            out.append((section, key, value, self.comment(full),
                        self.origin.get(full, self.origin.get(f"{full}.", ""))
                        or self._origin_prefix(full)))

        for section, spec in schema.items():
            if section == "precision.*":
                for p in self.precisions:
                    for key in spec:
                        add(f"precision.{p}", key, self.spec["precision"][p][key])
                continue
            table = node(section)
            if table is None:
                continue
            if isinstance(spec, Field):
                for key in table:
                    add(section, key, table[key])
            else:
                for key in spec:
                    if key in table:
                        add(section, key, table[key])
            if section == "memory.reserved":
                out.append((section, "= reserved_bytes_per_tile", self.reserved_bytes_per_tile,
                            "the sum of this table: bytes per tile no plan may use", ""))
        for key, ends in self.spec.get(RANGES, {}).items():
            full = f"{RANGES}.{key}"
            out.append((RANGES, key, list(ends), self.comments.get(full, ""),
                        self.origin.get(full, "")))
        return out

    def _origin_prefix(self, full: str) -> str:
        for k, v in self.origin.items():
            if k.startswith(full + "."):
                return v
        return ""

    def summary(self) -> dict[str, Any]:
        """One row of ``tilec targets``."""
        return {
            "name": self.name, "description": self.description, "tiles": self.tiles,
            "bytes_per_tile": self.bytes_per_tile, "total_bytes": self.total_bytes,
            "reserved_bytes_per_tile": self.reserved_bytes_per_tile,
            "grid": list(self.grid), "clock_hz": self.clock_hz,
            "peak_macs_per_s": self.peak_macs_per_s(), "precisions": list(self.precisions),
            "default_precision": self.default_precision, "placement": self.placement,
            "cost_model": self.family, "source": self.source,
        }
