"""The ``tilec`` command line.

Each sub-command lives in its own module under :mod:`tilec.commands` and registers itself with
:func:`register`; this module only builds the parser and turns errors into exit codes:

* 0 -- fits (or the command succeeded), 1 -- does not fit (a diagnosis was printed),
* 2 -- bad input or usage (one line naming the file, node or field; ``--debug`` for a traceback),
* 3 -- an internal error in tilec.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from tilec import __version__
from tilec.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, TilecError, one_line

COMMANDS = ("compile", "sweep", "inspect", "lower", "passes", "targets", "ops", "zoo", "report",
            "layout")
"""Sub-commands, in the order ``tilec --help`` lists them (module tilec.commands.<name>_cmd)."""


class TilecArgumentParser(argparse.ArgumentParser):
    """argparse with tilec's error contract: a usage error is one ``tilec: error:`` line, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT,
                  f"tilec: error: {one_line(message)} (see `{self.prog} --help`)\n")


def common_parser() -> argparse.ArgumentParser:
    """Flags every sub-command takes."""
    parent = TilecArgumentParser(add_help=False)
    parent.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of any error")
    parent.add_argument("--quiet", "-q", action="store_true",
                        help="print only the result (no progress display)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = TilecArgumentParser(
        prog="tilec",
        description="Ahead-of-time placement compiler for tiled-SRAM AI accelerators: does this "
                    "network fit this chip, tile by tile, and if not, why and what would.",
        epilog="Exit codes: 0 fits / success, 1 does not fit (diagnosis printed), "
               "2 bad input or usage, 3 internal error. `tilec COMMAND --help` for each command.",
    )
    parser.add_argument("--version", action="version", version=f"tilec {__version__}")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show the full traceback of any error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=TilecArgumentParser)
    parent = common_parser()
    for name in COMMANDS:
        module = importlib.import_module(f"tilec.commands.{name}_cmd")
        module.register(sub, parent)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tilec`` script; returns the exit code (also for usage errors)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors: argparse has printed already
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args.func(args) or 0)
    except TilecError as exc:
        if debug:
            traceback.print_exc()
        print(f"tilec: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tilec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tilec inspect m.onnx | head`: the reader left; not an error
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep the interpreter's flush quiet
        return 0
    except OSError as exc:
        if exc.filename is None:  # not about a file: a bug like any other
            return _internal(exc, debug)
        # A file that cannot be read or written (a full disk, a path made unwritable since the
        # command line was checked): the environment's doing, not tilec's, so one line, exit 2.
        if debug:
            traceback.print_exc()
        print(f"tilec: error: {exc.filename}: {exc.strerror or one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug in tilec, never a verdict on the model
        return _internal(exc, debug)


def _internal(exc: BaseException, debug: bool) -> int:
    """Report an exception tilec did not raise on purpose: a bug, exit 3."""
    if debug:
        traceback.print_exception(exc)
    print(f"tilec: internal error: {type(exc).__name__}: {one_line(exc)} (rerun with --debug "
          "for the traceback)", file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
