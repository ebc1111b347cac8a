"""``tilec sweep --compare measured.toml``: published or measured points beside the prediction.

The file's format is that of ``../shared/calibration/*.toml``: ``[[point]]`` tables with
``image_size``, ``batch``, ``precision``, ``result`` ("fits" / "oom") and optionally
``latency_ms``. Each point is matched with the sweep's grid point of the same configuration; a
measured point outside the grid is listed as such (the sweep did not predict it).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tilec.errors import InputError

RESULTS = {"fits": "fits", "oom": "does_not_fit"}


@dataclass
class Measured:
    image_size: tuple[int, int]
    batch: int
    precision: str
    result: str  # "fits" | "does_not_fit"
    latency_ms: float | None = None
    source: str = ""


def load(path: str | Path) -> list[Measured]:
    """The file's points; a malformed file or point is one line naming the file and field."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except OSError as exc:
        raise InputError(f"{p}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not valid TOML ({exc})") from None
    raw = data.get("point")
    if not isinstance(raw, list) or not raw:
        raise InputError(f"{p}: no [[point]] tables")
    out = []
    for i, pt in enumerate(raw):
        where = f"{p}: point {i + 1}"
        try:
            size = pt["image_size"]
            hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
            batch, precision, result = int(pt["batch"]), str(pt["precision"]), str(pt["result"])
        except KeyError as exc:
            raise InputError(f"{where}: missing field {exc}") from None
        except (TypeError, ValueError, IndexError):
            raise InputError(f"{where}: image_size / batch must be integers") from None
        if result not in RESULTS:
            raise InputError(f"{where}: result '{result}' is not one of fits, oom")
        lat = pt.get("latency_ms")
        if lat is not None and not isinstance(lat, int | float):
            raise InputError(f"{where}: latency_ms must be a number")
        out.append(Measured(hw, batch, precision, RESULTS[result],
                            float(lat) if lat is not None else None, str(pt.get("source", ""))))
    return out


def compare(measured: list[Measured], points: list[dict[str, Any]],
            frontier: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Per measured point: the prediction, whether the verdicts agree, the latency error.

    A configuration off the grid is predicted only where the batch search decided that very
    batch (one of its probes; ``by`` says so): the frontier is not read as "every batch below
    the answer fits" -- feasibility need not be monotone in the batch."""
    index = {(p["precision"], p["image_h"], p["image_w"], p["batch"]): p for p in points}
    # probes that decided their batch (a bounds check that did not decide is no prediction)
    probes = {(f["precision"], f["image_h"], f["image_w"], pr["value"]): pr
              for f in frontier or [] for pr in f.get("probes", [])
              if pr["result"] != "unknown" or pr["by"] == "plan"}
    rows = []
    for m in sorted(measured, key=lambda m: (m.precision, m.image_size, m.batch)):
        k = (m.precision, *m.image_size, m.batch)
        pred = index.get(k)
        status, source = (pred["status"], "grid") if pred else (None, None)
        if pred is None and k in probes:
            status, source = probes[k]["result"], "search"
        row: dict[str, Any] = {"image_h": m.image_size[0], "image_w": m.image_size[1],
                               "batch": m.batch, "precision": m.precision,
                               "measured": m.result, "measured_ms": m.latency_ms,
                               "predicted": status, "source": source,
                               "predicted_ms": pred["latency_ms"] if pred else None,
                               "agree": None, "error_pct": None}
        if status is not None and status not in ("unknown", "error"):
            row["agree"] = status == m.result
        if pred is not None and m.latency_ms and pred["latency_ms"] is not None:
            row["error_pct"] = 100.0 * (pred["latency_ms"] - m.latency_ms) / m.latency_ms
        rows.append(row)
    return rows
