"""The ``--precision auto`` section of the terminal summary, from ``plan.precision_auto`` alone
(so ``tilec report`` on a saved plan prints what the compile printed)."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Group
from rich.text import Text

TITLE = "precision auto"


def _mib(x: int | None) -> str:
    if x is None:
        return "-"
    return f"{x / 2**20:,.1f} MiB" if abs(x) >= 2**20 else f"{x / 1024:,.1f} KiB"


def _err(e: dict[str, float] | None) -> str:
    if not e:
        return "-"
    r = e.get("rel_l2", math.nan)
    text = f"rel L2 {r:.3g}, max-abs {e.get('max_abs', math.nan):.3g}"
    if r == 1.0 and e.get("max_rel") == 1.0:  # |y~ - y| = |y| and max|y~ - y| = max|y|
        text += " (the outputs collapse to zero)"
    return text


def lines(data: dict[str, Any]) -> list[str]:
    """The section as plain lines (the terminal styles the first)."""
    out: list[str] = []
    sens = data.get("sensitivity", {})
    cands = data.get("candidates", [])
    verdict = data.get("verdict")
    head = {"fits": "a per-layer map that fits (verified plan)",
            "none": "no per-layer precision map can fit (proven by the bounds)",
            "gave_up": "gave up: no confirmed map"}.get(verdict, str(verdict))
    out.append(f"{head} · {data.get('spec')} over {', '.join(cands)} · "
               f"{data.get('layers')} layers")
    if data.get("reason"):
        out.append(f"why: {data['reason']}")
    counts = data.get("counts") or {}
    if counts:
        out.append("map: " + ", ".join(f"{p} x{counts[p]}" for p in cands if counts.get(p))
                   + f" · activations {data.get('activations', '')}")
        wb = data.get("weight_bytes", {})
        out.append(f"weights {_mib(wb.get('ceiling'))} at {data.get('ceiling')} -> "
                   f"{_mib(wb.get('map'))} (saved {_mib(wb.get('saved'))})")
    err = data.get("error", {})
    if err.get("map"):
        out.append(f"measured end-to-end error of the map: {_err(err['map'])}")
    uniform = err.get("uniform") or {}
    for p in (p for p in cands if p in uniform):
        u = uniform[p]
        ub = u.get("uniform_bounds")
        tag = (f" (uniform {p}: ruled out by ({ub}))" if ub else "")
        if p in ("fp32", "fp16"):
            tag += " (the float reference)"
        out.append(f"  uniform {p}: {_err(u.get('error'))}{tag}")
    shape = next(iter((sens.get("probe") or {}).values()), None)
    where = "x".join(map(str, shape)) if shape else "-"
    runs = sens.get("runs", 0)
    measured = f", {runs} onnxruntime runs" if runs else ""
    out.append(f"sensitivity: {sens.get('method')} at the probe {where}{measured}")
    rho = sens.get("spearman")
    if rho:
        out.append("entropy proxy (EAGL) vs measured, Spearman rank correlation: "
                   + ", ".join(f"{p} {v:+.2f}" if v is not None else f"{p} -"
                               for p, v in ((p, rho[p]) for p in cands if p in rho)))
    kept = data.get("kept") or []
    if kept:
        out.append(f"kept at {data.get('ceiling')} (the most sensitive first, then those where "
                   "lowering saves nothing):")
        out.extend(f"  {k['layer']}: {k['reason']}" for k in kept)
    for r in data.get("rounds") or []:
        bits = [f"round {r['round']}: {r.get('status', r.get('solver'))}"]
        if r.get("bound") is not None:
            bits.append(f"knapsack not proven optimal: objective {r.get('objective')}, "
                        f"bound {r['bound']}")
        if r.get("evidence"):
            bits.append(f"evidence {r['evidence']}, over by {r.get('over_by')}")
        if r.get("cut"):
            bits.append(f"next map must save {r['need']:,} B more in ({r['cut']})")
        out.append(" · ".join(bits))
    return out


def render(data: dict[str, Any]) -> Group:
    rows: list = [Text(""), Text(TITLE, style="bold")]
    for i, line in enumerate(lines(data)):
        rows.append(Text("  " + line, style="bold" if i == 0 else None))
    return Group(*rows)
