"""The plan's JSON Schema: valid itself, in step with tilec/plan/model.py, strict, and every plan
and diagnosis tilec writes validates against it."""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing

import jsonschema
import pytest
from report_fixtures import all_plans, gc200_plan

from tilec.costmodel import AXES, CATEGORIES
from tilec.plan import model
from tilec.report.schema import plan_schema, type_errors, validation_errors


def _dataclasses() -> list[type]:
    return [obj for obj in vars(model).values()
            if dataclasses.is_dataclass(obj) and obj.__module__ == model.__name__]


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(plan_schema())
    assert plan_schema()["$defs"]["Plan"]["properties"]["version"]["const"] == \
        model.SCHEMA_VERSION
    assert plan_schema()["$defs"]["Plan"]["properties"]["schema"]["const"] == model.SCHEMA_NAME


@pytest.mark.parametrize("cls", _dataclasses(), ids=lambda c: c.__name__)
def test_schema_matches_the_dataclasses(cls: type) -> None:
    """Every dataclass field is a required schema property and vice versa, and a field may be
    null exactly when its type allows None. Fails when model.py gains a field the schema does
    not document (re-sync plan.schema.json and docs/reports.md)."""
    spec = plan_schema()["$defs"][cls.__name__]
    fields = {f.name for f in dataclasses.fields(cls) if f.name != "timings"}
    assert set(spec["properties"]) == fields, f"{cls.__name__}: schema and model differ"
    assert set(spec["required"]) == fields, "to_json writes every field, so all are required"
    assert spec["additionalProperties"] is False
    hints = typing.get_type_hints(cls)
    for name in fields:
        hint = hints[name]
        optional = (typing.get_origin(hint) in (typing.Union, types.UnionType)
                    and type(None) in typing.get_args(hint)) or hint is typing.Any
        prop = {"$defs": plan_schema()["$defs"], **spec["properties"][name]}
        nullable = jsonschema.Draft202012Validator(prop).is_valid(None)
        assert nullable == optional, f"{cls.__name__}.{name}"


def test_enums_follow_the_contracts() -> None:
    defs = plan_schema()["$defs"]
    assert defs["category"]["enum"] == list(CATEGORIES)
    assert defs["axis"]["enum"] == list(AXES)
    assert set(defs["Evidence"]["properties"]["kind"]["enum"]) == set(model.EVIDENCE_KINDS)
    assert set(defs["Plan"]["properties"]["status"]["enum"]) == {
        model.STATUS_FITS, model.STATUS_DOES_NOT_FIT, model.STATUS_UNKNOWN}


@pytest.mark.parametrize("name", sorted(all_plans()))
def test_every_fixture_plan_validates(name: str) -> None:
    data = json.loads(all_plans()[name].to_json())
    assert validation_errors(data) == []
    assert type_errors(data) == []


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(extra=1), "Additional properties are not allowed ('extra'"),
    (lambda d: d["ops"][0].pop("split"), "'split' is a required property"),
    (lambda d: d["ops"][0]["always"].update(vram=4), "'vram' is not one of"),
    (lambda d: d["ops"][0]["split"].update(height=2), "'height' is not one of"),
    (lambda d: d["buffers"][0].update(bytes=-1), "-1 is less than the minimum of 0"),
    (lambda d: d["buffers"][0].update(tiles=[[0, 1, 2]]), "is too long"),
    (lambda d: d.update(status="maybe"), "'maybe' is not one of"),
    (lambda d: d.update(version=4), "3 was expected"),
    (lambda d: d["target"].update(placement="ring"), "'ring' is not one of"),
    (lambda d: d["memory"].update(peak_tile="3"), "'3' is not of type 'integer'"),
])
def test_schema_is_strict(change: typing.Callable[[dict], object], message: str) -> None:
    data = json.loads(gc200_plan().to_json())
    changed = copy.deepcopy(data)
    change(changed)
    errors = validation_errors(changed)
    assert errors and any(message in e for e in errors), errors


def test_fast_type_check_agrees_on_types() -> None:
    """The check `tilec report` runs (no jsonschema) catches wrong types and missing fields."""
    data = json.loads(gc200_plan().to_json())
    bad = copy.deepcopy(data)
    bad["memory"]["per_tile_peak"][5] = "full"
    del bad["steps"][2]["sync_cycles"]
    bad["diagnosis"] = {"evidence": {"kind": "x", "summary": 3}}
    errors = type_errors(bad)
    assert "memory.per_tile_peak[5]: expected int, got a string 'full'" in errors
    assert "steps[2]: 'sync_cycles' is missing" in errors
    assert "diagnosis.evidence.summary: expected str, got int 3" in errors
    assert any("diagnosis: 'worst_tile' is missing" in e for e in errors)
