"""Helpers shared by the sub-commands: the console and the model-selection flags."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path
from typing import TextIO

from rich.console import Console

from tilec.errors import InputError


class _NoTrailingBlanks:
    """A text stream that drops the blanks rich pads table cells with at the ends of lines.

    Only for output that is not a terminal: a saved or piped table then diffs and greps
    cleanly. rich writes whole rendered lines per print, so a line never straddles two writes.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(_TRAILING.sub("\n", text))

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._stream.fileno()


_TRAILING = re.compile(r"[ \t]+\n")


def console(args: argparse.Namespace | None = None, *, stderr: bool = False) -> Console:
    """A rich console; plain text when output is not a terminal, so pipes and tests stay clean."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr, highlight=False, soft_wrap=False)
    return Console(file=_NoTrailingBlanks(stream), highlight=False, soft_wrap=False,
                   width=None if sys.stdout.isatty() else 120)


def add_model_args(parser: argparse.ArgumentParser, *, target: bool = True) -> None:
    """MODEL plus the flags that fix its shape (and, for planning commands, the target)."""
    parser.add_argument("model", metavar="MODEL",
                        help="an .onnx file, file.py:factory (a PyTorch module), or a built-in "
                             "model name (see `tilec zoo`)")
    if target:
        parser.add_argument("--target", "-t", default="gc200",
                            help="target name (see `tilec targets`) or path to a target TOML "
                                 "(default: gc200)")
    parser.add_argument("--batch", "-b", type=positive_int, default=None, metavar="N",
                        help="batch size (sets dimension 0 of every input of rank 2 or more)")
    parser.add_argument("--image-size", "-s", type=image_size, default=None, metavar="S|HxW",
                        help="input image size, e.g. 896 or 640x480 (sets H and W of every "
                             "NCHW input)")
    parser.add_argument("--input-shape", default=None, metavar="SHAPE",
                        help="whole input shape, e.g. 1,3,896,896; for several inputs "
                             "NAME=1,3,896,896;NAME2=1,10 (the ONNX input names, or forward()'s "
                             "parameter names for file.py:factory, which also takes "
                             "1,3,896,896;1,10 in forward's order, and a dtype suffix for an "
                             "integer input: ids=1,128:int64); --batch / --image-size apply on "
                             "top")


def image_size(text: str) -> tuple[int, int]:
    """argparse type for --image-size: S or HxW, positive (a bad value is a usage error, exit 2)."""
    from tilec.capture.onnx_file import parse_image_size

    try:
        size = parse_image_size(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--image-size: ")) from None
    assert size is not None
    return size


def positive_int(text: str) -> int:
    """argparse type for --batch and friends (0 and negatives are usage errors, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type for time limits and other positive reals."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(value):  # float() takes "nan" and "inf"
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def output_file(text: str) -> str:
    """argparse type for every flag naming a file tilec writes (--json, --html, -o, ...).

    Checked when the command line is parsed, before any work: a compile that runs for a minute
    and then cannot write its report would waste the minute and end in an ``OSError``. A path
    that is a directory, or whose directory is missing or not writable, is a usage error.
    """
    if not text:
        raise argparse.ArgumentTypeError("empty file name")
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is a directory; give a file name")
    parent = path.parent
    if not parent.exists():
        raise argparse.ArgumentTypeError(f"cannot write '{text}': directory '{parent}' does "
                                         "not exist")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write '{text}': '{parent}' is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists()
                                                    and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"cannot write '{text}': permission denied")
    return text


def split_names(text: str | None, flag: str) -> list[str] | None:
    """``"a,b,c"`` -> ["a", "b", "c"]; None stays None; an empty item is an error."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if any(not n for n in names):
        raise InputError(f"{flag}: empty name in '{text}'")
    return names
