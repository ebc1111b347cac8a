"""Errors that the CLI turns into one clear line and an exit code.

Every problem a user can cause (a missing file, a bad flag value, an op we cannot plan) is raised as
a :class:`InputError` carrying a message that names the file, node or field at fault. The CLI prints
that single line and exits with code 2; ``--debug`` shows the traceback as well. Anything else that
escapes is a bug in tilec and is reported as an internal error (exit code 3), never as a verdict on
the model.
"""

from __future__ import annotations

EXIT_FITS = 0
EXIT_DOES_NOT_FIT = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


class TilecError(Exception):
    """Base class of the errors tilec raises on purpose."""

    exit_code: int = EXIT_INTERNAL


class InputError(TilecError):
    """Bad input: the message names the file, node or field; the CLI exits with code 2."""

    exit_code = EXIT_BAD_INPUT


class ShapeError(InputError):
    """ONNX shape inference rejected the graph at a node (an :class:`InputError`, exit code 2).

    Carries the node and op type separately so a caller can add what it knows (e.g. that the user's
    ``--image-size`` is what made a Concat's inputs disagree) without re-parsing the message.
    """

    def __init__(self, message: str, *, node: str | None = None, op: str | None = None,
                 detail: str = "") -> None:
        super().__init__(message)
        self.node = node
        self.op = op
        self.detail = detail


class InternalError(TilecError):
    """tilec broke one of its own invariants (e.g. a plan failed verification). A bug, exit 3."""

    exit_code = EXIT_INTERNAL


def one_line(text: object) -> str:
    """``text`` as a single line (the CLI's error contract): inner newlines become spaces."""
    return " ".join(str(text).split()) or "(no message)"
