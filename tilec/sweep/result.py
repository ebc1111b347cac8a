"""A sweep's results as data, and their files: JSON (schema ``tilec.sweep``, versioned like the
plan; tilec/report/sweep.schema.json) and CSV (one row per grid point; one per frontier entry).

Neither file holds a timestamp, a path of this machine or a count of what came from the cache:
the same sweep gives byte-identical files whatever the number of workers, the cache or the day.
Floats are written with ``repr`` so that reading a CSV back gives exactly the values written.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tilec import __version__

SCHEMA_NAME = "tilec.sweep"
SCHEMA_VERSION = 1

POINT_COLUMNS = ("image_h", "image_w", "precision", "batch", "status", "evidence", "by",
                 "latency_ms", "device_ms", "throughput_per_s", "peak_bytes", "peak_pct")
"""CSV columns of a grid point (the JSON's ``points`` items have the same fields)."""
FRONTIER_COLUMNS = ("image_h", "image_w", "precision", "max_batch", "status", "fail_batch",
                    "fail_kind", "cap", "note")
"""CSV columns of a frontier entry (the JSON's ``frontier`` items add ``probes``)."""
INTS = {"image_h", "image_w", "batch", "peak_bytes", "max_batch", "fail_batch", "cap"}
FLOATS = {"latency_ms", "device_ms", "throughput_per_s", "peak_pct"}


@dataclass
class SweepResult:
    """Everything a sweep's outputs are rendered from."""

    model: dict[str, Any]  # name (as given), id (the cache's model hash)
    target: dict[str, Any]  # name, tiles, bytes_per_tile, reserved_bytes_per_tile
    grid: dict[str, Any]  # image_sizes [[h, w], ...], batches, precisions
    settings: dict[str, Any]  # time_limit, seed, cap
    points: list[dict[str, Any]] = field(default_factory=list)
    frontier: list[dict[str, Any]] = field(default_factory=list)
    schema: str = SCHEMA_NAME
    version: int = SCHEMA_VERSION
    tilec_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "version": self.version,
                "tilec_version": self.tilec_version, "model": self.model,
                "target": self.target, "grid": self.grid, "settings": self.settings,
                "points": [{c: p.get(c) for c in POINT_COLUMNS} for p in self.points],
                "frontier": [{**{c: f.get(c) for c in FRONTIER_COLUMNS},
                              "probes": [dict(sorted(pr.items())) for pr in f.get("probes", [])]}
                             for f in self.frontier]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n"

    @staticmethod
    def from_dict(data: dict[str, Any]) -> SweepResult:
        if data.get("schema") != SCHEMA_NAME:
            raise ValueError(f"not a tilec sweep (schema={data.get('schema')!r})")
        if data.get("version") != SCHEMA_VERSION:
            raise ValueError(f"sweep schema version {data.get('version')} is not supported "
                             f"(this tilec reads version {SCHEMA_VERSION})")
        return SweepResult(model=data["model"], target=data["target"], grid=data["grid"],
                           settings=data["settings"], points=data["points"],
                           frontier=data["frontier"], tilec_version=data["tilec_version"])

    def fits(self, precision: str, hw: tuple[int, int], batch: int) -> dict[str, Any] | None:
        for p in self.points:
            if (p["precision"], p["image_h"], p["image_w"], p["batch"]) == (precision, *hw, batch):
                return p
        return None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def to_csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return buf.getvalue()


def read_csv(text: str) -> list[dict[str, Any]]:
    """The rows of :func:`to_csv`, typed again (empty cell -> None)."""
    rows = []
    for r in csv.DictReader(io.StringIO(text)):
        row: dict[str, Any] = {}
        for k, v in r.items():
            if v == "" and k not in ("evidence", "note"):
                row[k] = None
            elif k in INTS:
                row[k] = int(v)
            elif k in FLOATS:
                row[k] = float(v)
            else:
                row[k] = v
        rows.append(row)
    return rows


def write_files(result: SweepResult, out: Path) -> dict[str, Path]:
    """sweep.json, points.csv and frontier.csv in ``out``; returns what was written."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "sweep.json", "points_csv": out / "points.csv",
             "frontier_csv": out / "frontier.csv"}
    files["json"].write_text(result.to_json())
    files["points_csv"].write_text(to_csv(result.points, POINT_COLUMNS))
    files["frontier_csv"].write_text(to_csv(result.frontier, FRONTIER_COLUMNS))
    return files
