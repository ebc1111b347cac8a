"""Helpers shared by the sub-commands: the console and the model-selection flags."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from tilec.errors import InputError


def console(args: argparse.Namespace | None = None, *, stderr: bool = False) -> Console:
    """A rich console; plain text when output is not a terminal, so pipes and tests stay clean."""
    return Console(stderr=stderr, highlight=False, soft_wrap=False,
                   width=None if sys.stdout.isatty() else 120)


def add_model_args(parser: argparse.ArgumentParser, *, target: bool = True) -> None:
    """MODEL plus the flags that fix its shape (and, for planning commands, the target)."""
    parser.add_argument("model", metavar="MODEL",
                        help="an .onnx file, file.py:factory (a PyTorch module), or a built-in "
                             "model name (see `tilec zoo list`)")
    if target:
        parser.add_argument("--target", "-t", default="gc200",
                            help="target name (see `tilec targets`) or path to a target TOML "
                                 "(default: gc200)")
    parser.add_argument("--batch", "-b", type=positive_int, default=None,
                        help="batch size (rewrites dimension 0 of every input)")
    parser.add_argument("--image-size", "-s", default=None, metavar="S|HxW",
                        help="input image size, e.g. 896 or 640x480 (rewrites NCHW inputs)")
    parser.add_argument("--input-shape", default=None, metavar="N,C,H,W",
                        help="full input shape for a PyTorch module, e.g. 1,3,896,896")


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
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def split_names(text: str | None, flag: str) -> list[str] | None:
    """``"a,b,c"`` -> ["a", "b", "c"]; None stays None; an empty item is an error."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if any(not n for n in names):
        raise InputError(f"{flag}: empty name in '{text}'")
    return names
