"""``tilec report PLAN.json``: the summary and the report files of a saved plan or diagnosis.

Prints exactly what the ``tilec compile`` that saved the plan printed (both render the same Plan
data with :func:`tilec.report.terminal.print_plan`), and writes the same files its flags ask for.
The exit code mirrors compile's: 0 for a plan that fits, 1 for a diagnosis.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tilec.commands.common import console, output_file
from tilec.errors import EXIT_DOES_NOT_FIT, EXIT_FITS, InputError
from tilec.plan.model import READABLE_VERSIONS, SCHEMA_NAME, STATUS_FITS, Plan


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "report", parents=[parent], help="summarise a saved plan; write HTML, trace, ONNX",
        description="Read a plan or diagnosis saved by `tilec compile --json` and print its "
                    "summary (the same as the compile printed); optionally write the "
                    "self-contained HTML report, a Chrome/Perfetto trace of the schedule and "
                    "the lowered model annotated with its placement. Exit code: 0 if the plan "
                    "fits, 1 for a diagnosis, 2 for a bad file.")
    p.add_argument("plan", metavar="PLAN.json", help="a plan saved by `tilec compile --json`")
    p.add_argument("--html", type=output_file, metavar="FILE",
                   help="write a self-contained HTML report")
    p.add_argument("--trace", type=output_file, metavar="FILE",
                   help="write a Chrome/Perfetto trace of the schedule")
    p.add_argument("--onnx", type=output_file, metavar="FILE",
                   help="write the lowered model annotated with its placement (for Netron); "
                        "re-captures and re-lowers the plan's model, which must be available")
    p.add_argument("--verbose", "-v", action="store_true", help="also print the per-op table")
    p.set_defaults(func=run)


def load_plan(path: str | Path) -> Plan:
    """Read a saved plan; every problem is one :class:`InputError` naming the file and field."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a plan file")
    try:  # "-sig": an editor's byte-order mark is not worth a refusal
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (expected a tilec plan in JSON)") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg})") from None
    except RecursionError:
        raise InputError(f"{path}: not a tilec plan (JSON nested too deeply)") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_NAME:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise InputError(f"{path}: not a tilec plan (schema field is {found!r}, expected "
                         f"{SCHEMA_NAME!r})")
    if data.get("version") not in READABLE_VERSIONS:
        versions = ", ".join(map(str, READABLE_VERSIONS))
        raise InputError(f"{path}: plan schema version {data.get('version')!r} is not supported "
                         f"(this tilec reads versions {versions}); re-run tilec compile")
    from tilec.report.schema import consistency_errors, type_errors

    errors = type_errors(data)
    if errors:
        raise InputError(f"{path}: not a valid plan: {errors[0]}"
                         + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    try:
        plan = Plan.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        # A value of the right type the model still cannot take (should not happen).
        raise InputError(f"{path}: not a valid plan ({type(exc).__name__}: {exc})") from None
    errors = consistency_errors(plan)
    if errors:
        raise InputError(f"{path}: inconsistent plan: {errors[0]}"
                         + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    return plan


def run(args: argparse.Namespace) -> int:
    from tilec.commands.compile_cmd import write_outputs
    from tilec.report.terminal import print_plan

    plan = load_plan(args.plan)
    print_plan(plan, console(args), verbose=args.verbose)
    write_outputs(plan, args, None)
    return EXIT_FITS if plan.status == STATUS_FITS else EXIT_DOES_NOT_FIT
