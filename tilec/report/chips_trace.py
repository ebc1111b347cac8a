"""The Chrome / Perfetto trace of a multi-chip plan: one track per chip.

Each chip's track shows, per pass of a (micro-)batch, what it receives over the links (``link
in``), its stage (``stage k``, with its supersteps nested inside, as the chip's own plan
scheduled them) and its host I/O. A pass starts on a chip when the previous chip has handed it on
and the chip has finished the previous pass (pipeline); sharded runs every stage one after the
other; replicate runs the chips side by side. Times are tilec's estimates, not measurements.
"""

from __future__ import annotations

from typing import Any

from tilec.plan.model import Plan
from tilec.report.data import model_line, verdict

PID = 1


def chips_trace_events(plan: Plan) -> dict[str, Any]:
    """The trace of ``plan`` (which has ``chips``) as a JSON-ready dict."""
    cs = plan.chips
    assert cs is not None
    label, _ = verdict(plan)
    meta: list[dict[str, Any]] = [
        {"ph": "M", "pid": PID, "tid": 0, "name": "process_name",
         "args": {"name": f"chips · {model_line(plan)} · {cs.mode} on {cs.system['name']} · "
                          f"{label}"}}]
    events: list[dict[str, Any]] = []
    plans = {st.chip: Plan.from_dict(st.plan) for st in cs.stages if st.plan is not None}
    for st in cs.stages:
        tid = st.chip + 1
        name = (f"chip {st.chip}: ops [{st.start}, {st.end})" if cs.mode != "replicate"
                else f"chip {st.chip}: batch {st.batch}")
        meta.append({"ph": "M", "pid": PID, "tid": tid, "name": "thread_name",
                     "args": {"name": name}})
        meta.append({"ph": "M", "pid": PID, "tid": tid, "name": "thread_sort_index",
                     "args": {"sort_index": tid}})
    passes = cs.micro_batches if cs.mode != "replicate" else 1
    end_prev_pass = [0.0] * len(cs.stages)  # per chip: when it finished the previous pass
    clock_end = 0.0
    for p in range(passes):
        handed = 0.0  # when the previous chip handed this pass on
        for k, st in enumerate(cs.stages):
            if cs.mode == "pipeline":
                t = max(handed, end_prev_pass[k])
            elif cs.mode == "sharded":
                t = max(handed, clock_end)
            else:
                t = 0.0
            tid = st.chip + 1
            sub = plans.get(st.same_as if st.same_as is not None else st.chip)
            for what, secs, args in (
                    ("link in", st.link_seconds, {"bytes": st.recv_bytes}),
                    (f"stage {k}" + (f" (micro-batch {p})" if passes > 1 else ""),
                     st.device_seconds or 0.0, {"ops": st.ops, "first_op": st.first_op,
                                                "last_op": st.last_op, "batch": st.batch,
                                                "peak_bytes": st.peak_bytes}),
                    ("host I/O", st.host_seconds, {})):
                if secs <= 0:
                    continue
                events.append(_slice(tid, what, t, secs, args))
                if what.startswith("stage") and sub is not None:
                    _steps(events, tid, sub, t)
                t += secs
            end_prev_pass[k] = t
            handed = t
            clock_end = max(clock_end, t)
    events.sort(key=lambda e: (e["tid"], e["ts"], -e.get("dur", 0), e["name"]))
    return {
        "traceEvents": meta + events,
        "displayTimeUnit": "ns",
        "otherData": {
            "tilec_version": plan.tilec_version, "model": plan.model.name,
            "system": cs.system["name"], "mode": cs.mode, "chips": cs.chips,
            "batch": plan.model.batch, "micro_batch": cs.micro_batch, "status": plan.status,
            "interval_s": cs.interval_seconds, "latency_s": cs.latency_seconds,
            "note": "times are tilec's estimates (cycles / clock), not measurements",
        },
    }


def _steps(events: list[dict[str, Any]], tid: int, sub: Plan, t0: float) -> None:
    """The stage plan's supersteps nested in its stage slice."""
    clock = sub.target.clock_hz
    t = t0
    for step in sub.steps:
        secs = step.cycles / clock
        if secs > 0:
            name = f"step {step.index}" + (f": {step.ops[0]}" if step.ops else "")
            events.append(_slice(tid, name, t, secs, {"cycles": step.cycles, "ops": step.ops}))
        t += secs


def _slice(tid: int, name: str, t: float, secs: float, args: dict[str, Any]) -> dict[str, Any]:
    return {"ph": "X", "pid": PID, "tid": tid, "name": name, "cat": "chip",
            "ts": round(t * 1e6, 3), "dur": round(secs * 1e6, 3), "args": args}
