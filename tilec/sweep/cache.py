"""Configuration keys and the on-disk result cache of ``tilec sweep``.

A result is stored under the SHA-256 of everything it depends on -- the model (its file's bytes,
or for a built-in model its name and the zoo's source), the target (its validated description),
the precision, the shape, the search settings, and the planner's code (every source file of
tilec that can change a verdict) -- so a re-run, or a grid extended by more sizes, batches or
precisions, computes only the configurations not seen before. A key is computed *without*
capturing or lowering the model: a run whose every configuration is cached never touches it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from tilec import __version__
from tilec.errors import InputError

SKIP = {"report", "commands", "sweep"}
"""tilec sub-packages that cannot change a verdict or a figure (rendering, the CLI, the sweep's
orchestration and outputs) -- except the files in ``KEEP``."""
KEEP = {"sweep/work.py"}
"""The sweep's own code that decides results (a grid point's evaluation, the batch search)."""


@lru_cache(maxsize=1)
def code_hash() -> str:
    """SHA-256 over tilec's version and the source of everything a verdict depends on: the core
    (capture, zoo, passes, planner, cost model) and the targets (their .py and .toml files)."""
    import tilec
    import tilec.passes
    import tilec.targets

    roots = [Path(tilec.__file__).parent, Path(tilec.passes.__file__).parent,
             Path(tilec.targets.__file__).parent]
    digest = hashlib.sha256(__version__.encode())
    for root in roots:
        for f in sorted(root.rglob("*")):
            rel = f.relative_to(root)
            if f.suffix not in (".py", ".toml") or (
                    rel.parts[0] in SKIP and rel.as_posix() not in KEEP):
                continue
            digest.update(f"{root.name}/{rel.as_posix()}".encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()


def model_id(model: str, input_shape: str | None = None) -> str:
    """What identifies ``model`` without capturing it: the file's bytes (an .onnx file; a
    ``file.py:factory`` -- the factory's file only: modules it imports are not hashed), or a
    built-in model's name with the zoo's source hash."""
    from tilec.capture import resolve_kind

    kind = resolve_kind(model)
    digest = hashlib.sha256(f"{kind}\0{input_shape}\0".encode())
    if kind == "zoo":
        from tilec.zoo.cache import source_hash

        digest.update(f"{model}\0{source_hash()}".encode())
    else:
        path = Path(str(model).rsplit(":", 1)[0] if kind == "python" else str(model))
        try:
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror}") from None
        digest.update(str(model).encode())
    return digest.hexdigest()


def target_id(target: Any) -> str:
    """The target's validated description (its merged TOML, not how it was named)."""
    spec = json.dumps(getattr(target, "spec", {}), sort_keys=True, default=str)
    return hashlib.sha256(f"{target.name}\0{spec}".encode()).hexdigest()


def key(*parts: Any) -> str:
    """The cache key of a configuration described by ``parts`` (plain data)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def sweep_cache_dir(explicit: str | Path | None = None) -> Path:
    """``--cache DIR``, else ``$TILEC_CACHE_DIR/sweep`` (the zoo cache's root)."""
    if explicit is not None:
        return Path(explicit)
    from tilec.zoo.cache import cache_dir

    return cache_dir().parent / "sweep"


class ResultCache:
    """Results by key, one small JSON file each (written atomically: parallel workers and
    concurrent sweeps never see half a file). ``disabled`` turns it into a no-op."""

    def __init__(self, root: Path, disabled: bool = False) -> None:
        self.root = root
        self.disabled = disabled

    def _path(self, k: str) -> Path:
        return self.root / k[:2] / f"{k}.json"

    def get(self, k: str) -> dict | None:
        if self.disabled:
            return None
        try:
            return json.loads(self._path(k).read_text())
        except (OSError, ValueError):  # absent, or damaged: computed again
            return None

    def put(self, k: str, value: dict) -> None:
        if self.disabled:
            return
        path = self._path(k)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump(value, fh, sort_keys=True)
            os.replace(tmp, path)
        except OSError as exc:
            raise InputError(f"{path.parent}: cannot write the sweep cache "
                             f"({exc.strerror}); use --no-cache or another --cache") from None
