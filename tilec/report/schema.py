"""The plan's JSON Schema (``plan.schema.json``, shipped as package data) and validation against it.

The schema documents every field of :mod:`tilec.plan.model` and is strict (every field required,
no unknown properties), so a test that validates every emitted plan catches any drift between the
code and the documentation. See docs/reports.md for the versioning policy.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SCHEMA_FILE = "plan.schema.json"


@cache
def plan_schema() -> dict[str, Any]:
    """The schema as a dict (read once from the package)."""
    return json.loads(resources.files("tilec.report").joinpath(SCHEMA_FILE).read_text())


def validation_errors(data: Any, limit: int = 5) -> list[str] | None:
    """Up to ``limit`` messages ``"<json path>: <problem>"``, [] when ``data`` is valid, or None
    when the ``jsonschema`` package is not installed (it is a development dependency only)."""
    try:
        import jsonschema
    except ImportError:
        return None
    validator = jsonschema.Draft202012Validator(plan_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(e.absolute_path), e.message))
    out = []
    for err in errors[:limit]:
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        out.append(f"{path.lstrip('.') or '(top level)'}: {_short(err.message)}")
    return out


def _short(message: str, width: int = 160) -> str:
    return message if len(message) <= width else message[: width - 3] + "..."
