"""Test-wide settings.

Hypothesis draws new random examples on every run, which is how the property tests keep finding
new cases on developers' machines (a failing example is then replayed from ``.hypothesis/``). CI
(``TILEC_CI=1``, set by ``.ci/run``) runs a fixed set instead, so a landing never depends on a
random draw; the examples are still many and varied, only the same each time.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("TILEC_CI"):
    settings.load_profile("ci")
