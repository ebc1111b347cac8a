"""The ``tilec`` command line.

Each sub-command lives in its own module under :mod:`tilec.commands` and registers itself with
:func:`register`; this module only builds the parser and turns errors into exit codes:

* 0 -- fits (or the command succeeded), 1 -- does not fit (a diagnosis was printed),
* 2 -- bad input or usage (one line naming the file, node or field; ``--debug`` for a traceback),
* 3 -- an internal error in tilec.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from tilec import __version__
from tilec.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, TilecError

COMMANDS = ("compile", "inspect", "lower", "passes", "targets", "zoo", "report", "layout")
"""Sub-commands, in the order ``tilec --help`` lists them (module tilec.commands.<name>_cmd)."""


def common_parser() -> argparse.ArgumentParser:
    """Flags every sub-command takes."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--debug", action="store_true",
                        help="show the full traceback of any error")
    parent.add_argument("--quiet", "-q", action="store_true",
                        help="print only the result (no progress display)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tilec",
        description="Ahead-of-time placement compiler for tiled-SRAM AI accelerators: does this "
                    "network fit this chip, tile by tile, and if not, why and what would.",
        epilog="Exit codes: 0 fits / success, 1 does not fit (diagnosis printed), "
               "2 bad input or usage, 3 internal error.",
    )
    parser.add_argument("--version", action="version", version=f"tilec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parent = common_parser()
    for name in COMMANDS:
        module = importlib.import_module(f"tilec.commands.{name}_cmd")
        module.register(sub, parent)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tilec`` script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    debug = getattr(args, "debug", False)
    try:
        return int(args.func(args) or 0)
    except TilecError as exc:
        if debug:
            traceback.print_exc()
        print(f"tilec: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tilec: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in tilec, never a verdict on the model
        if debug:
            traceback.print_exc()
        print(f"tilec: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the "
              "traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
