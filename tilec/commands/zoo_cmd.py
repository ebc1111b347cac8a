"""``tilec zoo``: registered here, implemented by its own issue."""

from __future__ import annotations

import argparse

from tilec.errors import InputError


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("zoo", parents=[parent], help="(not yet available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise InputError("tilec zoo is not available yet")
