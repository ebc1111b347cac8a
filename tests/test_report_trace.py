"""The Chrome trace-event JSON of the schedule: the format Perfetto and chrome://tracing import.

Checked against the Trace Event Format's rules for the event types used: complete events ("X")
with numeric ts/dur in microseconds, counters ("C") with numeric args, instant events ("i") with a
scope, metadata ("M") naming every process and thread used; slices on one thread must nest
(never overlap partially), or the importers misdraw or drop them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pytest
from report_fixtures import all_plans, does_not_fit_plan, gc200_plan, northpole_plan

from tilec.plan.model import tiles_in
from tilec.report.trace import trace_events, write_trace

EPS = 1e-6


def check_format(trace: dict) -> None:
    """Assert the trace follows the trace-event format (JSON object form)."""
    assert isinstance(trace["traceEvents"], list)
    named_processes, named_threads = set(), set()
    used_threads = set()
    by_thread: dict[tuple[int, int], list[tuple[float, float, str]]] = defaultdict(list)
    for ev in trace["traceEvents"]:
        ph = ev["ph"]
        assert ph in {"X", "C", "i", "M"}, ev
        assert isinstance(ev["name"], str) and ev["name"]
        assert isinstance(ev["pid"], int) and isinstance(ev["tid"], int)
        if ph == "M":
            assert ev["name"] in {"process_name", "thread_name", "process_sort_index",
                                  "thread_sort_index"}
            if ev["name"] == "process_name":
                named_processes.add(ev["pid"])
            if ev["name"] == "thread_name":
                named_threads.add((ev["pid"], ev["tid"]))
            continue
        assert isinstance(ev["ts"], (int, float)) and ev["ts"] >= 0
        if ph == "X":
            assert isinstance(ev["dur"], (int, float)) and ev["dur"] >= 0
            by_thread[(ev["pid"], ev["tid"])].append((ev["ts"], ev["ts"] + ev["dur"], ev["name"]))
            used_threads.add((ev["pid"], ev["tid"]))
        elif ph == "C":
            assert ev["args"] and all(isinstance(v, (int, float)) for v in ev["args"].values())
        elif ph == "i":
            assert ev["s"] in {"g", "p", "t"}
        assert ev["pid"] in named_processes, f"process {ev['pid']} has no name"
    assert used_threads <= named_threads, used_threads - named_threads
    for key, slices in by_thread.items():
        slices.sort(key=lambda s: (s[0], -s[1]))
        stack: list[tuple[float, float, str]] = []
        for start, end, name in slices:
            while stack and stack[-1][1] <= start + EPS:
                stack.pop()
            if stack:
                assert end <= stack[-1][1] + EPS, f"{key}: {name} overlaps {stack[-1][2]}"
            stack.append((start, end, name))


@pytest.mark.parametrize("name", sorted(all_plans()))
def test_every_trace_follows_the_format(name: str, tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    write_trace(all_plans()[name], path)
    trace = json.loads(path.read_text())
    check_format(trace)


def test_schedule_durations_are_the_estimates() -> None:
    plan = gc200_plan()
    trace = trace_events(plan)
    clock = plan.target.clock_hz
    steps = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] == "superstep"]
    assert len(steps) == len(plan.steps)
    assert steps[0]["ts"] == 0
    end = steps[-1]["ts"] + steps[-1]["dur"]
    assert end == pytest.approx(sum(s.cycles for s in plan.steps) / clock * 1e6, abs=1e-3)
    for ev, step in zip(steps, plan.steps, strict=True):
        assert ev["dur"] == pytest.approx(step.cycles / clock * 1e6, abs=2e-3)
        assert ev["args"]["ops"] == step.ops
    phases = [e for e in trace["traceEvents"] if e["ph"] == "X"
              and e["cat"] in ("exchange", "compute", "sync")]
    assert {e["name"] for e in phases} == {"exchange", "compute", "sync"}
    compute = sum(e["dur"] for e in phases if e["name"] == "compute")
    assert compute == pytest.approx(sum(s.compute_cycles for s in plan.steps) / clock * 1e6,
                                    rel=1e-4)
    # within a step: exchange, then compute, then sync
    first = sorted((e for e in phases if e["ts"] < steps[1]["ts"]), key=lambda e: e["ts"])
    assert [e["name"] for e in first] == ["exchange", "compute", "sync"]


def test_ops_on_tile_bands() -> None:
    plan = gc200_plan()
    trace = trace_events(plan)
    ops = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["pid"] == 2]
    for op in plan.ops:
        mine = [e for e in ops if e["name"] == op.name]
        assert mine, op.name
        assert sum(e["args"]["tiles_in_band"] for e in mine) == tiles_in(op.tiles)
        assert all(e["args"]["step"] == op.step for e in mine)
    # ops never share a track at the same time (ops in one superstep get lanes of their own)
    by_track: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for e in ops:
        by_track[e["tid"]].append((e["ts"], e["ts"] + e["dur"]))
    for slices in by_track.values():
        slices.sort()
        assert all(a[1] <= b[0] + EPS for a, b in pairwise(slices))
    threads = [e["args"]["name"] for e in trace["traceEvents"]
               if e["ph"] == "M" and e["name"] == "thread_name" and e["pid"] == 2]
    assert all(t.startswith("tiles ") for t in threads)


def test_ops_sharing_a_step_and_band_get_lanes() -> None:
    plan = gc200_plan()
    a, b = plan.ops[0], plan.ops[1]
    b.step, b.tiles = a.step, [[a.tiles[0][0], a.tiles[0][0] + 4]]  # same step, same band
    trace = trace_events(plan)
    mine = {e["name"]: e for e in trace["traceEvents"] if e["ph"] == "X" and e["pid"] == 2
            and e["name"] in (a.name, b.name) and e["args"]["step"] == a.step}
    assert mine[a.name]["tid"] != mine[b.name]["tid"]
    lanes = [e["args"]["name"] for e in trace["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name" and "(lane 2)" in
             e["args"]["name"]]
    assert lanes
    check_format(trace)


def test_mesh_bands_are_rows() -> None:
    plan = northpole_plan()
    trace = trace_events(plan)
    threads = {e["args"]["name"] for e in trace["traceEvents"]
               if e["ph"] == "M" and e["name"] == "thread_name" and e["pid"] == 2}
    assert "tiles 0-15" in threads and "tiles 240-255" in threads


def test_memory_counters_and_diagnosis_marker() -> None:
    plan = does_not_fit_plan()
    mem, d = plan.memory, plan.diagnosis
    assert mem is not None and d is not None
    trace = trace_events(plan)
    counters = [e for e in trace["traceEvents"] if e["ph"] == "C"
                and e["name"] == f"tile {mem.peak_tile} (worst) bytes"]
    assert len(counters) == len(plan.steps) + 1  # one per step and a closing zero
    assert sum(counters[mem.peak_step]["args"].values()) == mem.peak_bytes
    marks = [e for e in trace["traceEvents"] if e["ph"] == "i"]
    assert len(marks) == 1 and marks[0]["s"] == "g"
    assert f"tile {d.worst_tile} over by" in marks[0]["name"]
    step_ts = [e["ts"] for e in trace["traceEvents"] if e["ph"] == "X"
               and e["cat"] == "superstep"]
    assert marks[0]["ts"] == step_ts[d.worst_step]


def test_deterministic(tmp_path: Path) -> None:
    write_trace(gc200_plan(), tmp_path / "a.json")
    write_trace(gc200_plan(), tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
