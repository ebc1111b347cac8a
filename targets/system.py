"""Chip systems: several copies of one chip target joined by inter-chip links.

A system file is a small TOML that names its chip target (a built-in name or a target file) and
adds only what a single chip does not describe -- how many chips, and the link between them::

    [system]
    name = "m2000"
    chip = "gc200"
    chips = 4
    [link]
    bandwidth_bytes_per_s = 320e9
    latency_s = 1e-6

Built-in systems live in ``targets/systems/`` (so ``tilec targets`` keeps listing single chips);
``--target ./my-system.toml`` works the same way. Like a chip file, every constant cites its
source in a comment. A bad file is one :class:`~tilec.errors.InputError` line naming the file and
the field.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tilec.errors import InputError

from .spec import extract_comments
from .target import TileTarget

SYSTEMS_DIR = Path(__file__).resolve().parent / "systems"
MAX_CHIPS = 64  # modelling choice: a sanity cap on a system's chip count (an IPU-POD64 has 64)

_KEYS = {"system": {"name", "description", "chip", "chips"},
         "link": {"bandwidth_bytes_per_s", "latency_s"}}


@dataclass(frozen=True, eq=False)
class ChipSystem:
    """``chips`` copies of ``chip`` joined by links of ``link_bytes_per_s`` and ``link_latency_s``
    per transfer (every pair of chips exchanges directly: modelling choice, see docs/targets.md)."""

    name: str
    description: str
    chip: TileTarget
    chips: int
    link_bytes_per_s: float
    link_latency_s: float
    source: str = ""
    comments: dict[str, str] = field(default_factory=dict, repr=False)

    def link_seconds(self, nbytes: int) -> float:
        """Time to move ``nbytes`` from one chip to another (0 when nothing moves)."""
        if nbytes <= 0:
            return 0.0
        return self.link_latency_s + nbytes / self.link_bytes_per_s

    def describe(self) -> dict[str, Any]:
        """Plain data for the plan's JSON."""
        return {"name": self.name, "description": self.description, "chip": self.chip.name,
                "chips": self.chips, "link_bytes_per_s": float(self.link_bytes_per_s),
                "link_latency_s": float(self.link_latency_s)}


def system_names() -> list[str]:
    """Names of the built-in chip systems, sorted."""
    return sorted(p.stem for p in SYSTEMS_DIR.glob("*.toml"))


def is_system(name_or_path: str | Path) -> bool:
    """Does ``--target`` name a chip system (a built-in one, or a TOML file with a [system]
    table)? A file that cannot be read is left to the chip loader, which names the problem."""
    text = str(name_or_path)
    if (SYSTEMS_DIR / f"{text}.toml").is_file():
        return True
    path = Path(text)
    if not text.endswith(".toml") or not path.is_file():
        return False
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return isinstance(data.get("system"), dict)


def _number(label: str, where: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{label}: {where} must be a finite number, got {value!r}")
    if (positive and value <= 0) or value < 0:
        kind = "positive" if positive else "non-negative"
        raise InputError(f"{label}: {where} must be {kind}, got {value!r}")
    return float(value)


def load_system(name_or_path: str | Path) -> ChipSystem:
    """A built-in chip system by name, or a system TOML file by path."""
    text = str(name_or_path)
    builtin = SYSTEMS_DIR / f"{text}.toml"
    path, label = (builtin, f"{text}.toml") if builtin.is_file() else (Path(text), text)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{label}: no such system file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{label}: cannot read system file ({exc})") from None
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{label}: invalid TOML: {exc}") from None
    for section in data:
        if section not in _KEYS:
            raise InputError(f"{label}: unknown section [{section}] (a system file has "
                             "[system] and [link])")
    for section, keys in _KEYS.items():
        table = data.get(section)
        if not isinstance(table, dict):
            raise InputError(f"{label}: missing section [{section}]")
        for key in table:
            if key not in keys:
                raise InputError(f"{label}: [{section}] unknown field '{key}' "
                                 f"(known: {', '.join(sorted(keys))})")
    sysd, link = data["system"], data["link"]
    for key in ("name", "chip", "chips"):
        if key not in sysd:
            raise InputError(f"{label}: [system] {key} is required")
    for key in ("bandwidth_bytes_per_s", "latency_s"):
        if key not in link:
            raise InputError(f"{label}: [link] {key} is required")
    name = sysd["name"]
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{label}: [system] name must be a non-empty string, got {name!r}")
    chips = sysd["chips"]
    if isinstance(chips, bool) or not isinstance(chips, int) or not 1 <= chips <= MAX_CHIPS:
        raise InputError(f"{label}: [system] chips must be an integer from 1 to {MAX_CHIPS}, "
                         f"got {chips!r}")
    chip_name = sysd["chip"]
    if not isinstance(chip_name, str) or not chip_name.strip():
        raise InputError(f"{label}: [system] chip must name a chip target, got {chip_name!r}")
    from . import load_target, names

    if chip_name not in names() and not Path(chip_name).is_absolute():
        local = path.parent / chip_name
        if local.is_file():
            chip_name = str(local)
    try:
        chip = load_target(chip_name)
    except InputError as exc:
        raise InputError(f"{label}: [system] chip: {exc}") from None
    bw = _number(label, "[link] bandwidth_bytes_per_s", link["bandwidth_bytes_per_s"],
                 positive=True)
    lat = _number(label, "[link] latency_s", link["latency_s"], positive=False)
    desc = sysd.get("description", "")
    if not isinstance(desc, str):
        raise InputError(f"{label}: [system] description must be a string, got {desc!r}")
    return ChipSystem(name=name, description=desc, chip=chip, chips=chips, link_bytes_per_s=bw,
                      link_latency_s=lat, source=text, comments=extract_comments(raw))
