"""Export zoo models to ONNX, cached on disk.

A zoo model's ONNX file is a pure function of (model name, input size, batch, opset, Mish form) and
of the code that builds and converts it. Exporting P5 takes a few seconds (seeded weights, BN
calibration, conversion, a 280 MB write); reading the cached file back takes well under one. The
cache key therefore hashes all of those -- including the source of :mod:`tilec.zoo` and of the
torch.fx converter -- so an edited model definition never serves a stale file.

Files live under ``platformdirs.user_cache_dir("tilec")/zoo`` (``$TILEC_CACHE_DIR/zoo`` when that
variable is set; the tests point it at a temporary directory). They are written to a temporary file
in the same directory and renamed into place, so several processes exporting the same model at once
each see either no file or a complete one, never a torn write. Writing a file removes the files of
the same configuration made by other code (another key): they can never be served again, and a
model like P7 is over 1 GB a copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from tilec.errors import InputError, InternalError
from tilec.zoo.registry import ZooSpec, spec

CACHE_ENV = "TILEC_CACHE_DIR"
_PROTOBUF_LIMIT = 2**31 - 1


def cache_dir(create: bool = True) -> Path:
    """The directory holding exported zoo models (created on demand)."""
    root = os.environ.get(CACHE_ENV)
    if root:
        base = Path(root).expanduser()
    else:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("tilec"))
    path = base / "zoo"
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{path}: cannot create the zoo cache directory ({exc.strerror}); "
                             f"point ${CACHE_ENV} at a writable directory") from exc
    return path


@lru_cache(maxsize=1)
def source_hash() -> str:
    """SHA-256 over the code that determines an exported file (zoo + fx converter packages)."""
    here = Path(__file__).resolve().parent
    files = [*sorted(here.glob("*.py")), *sorted((here.parent / "capture" / "fx").glob("*.py"))]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def normalise_size(zspec: ZooSpec, image_size: int | tuple[int, int] | str | None
                   ) -> tuple[int, int]:
    """(H, W) for ``image_size`` (default: the model's), checked against the network stride."""
    from tilec.capture.onnx_file import parse_image_size

    if image_size is None:
        hw = (zspec.default_image_size, zspec.default_image_size)
    elif isinstance(image_size, tuple):
        hw = (int(image_size[0]), int(image_size[1]))
        if min(hw) <= 0:
            raise InputError(f"--image-size: must be positive, got {hw[0]}x{hw[1]}")
    else:
        parsed = parse_image_size(image_size)
        assert parsed is not None
        hw = parsed
    if any(s % zspec.stride for s in hw):
        lo = max(zspec.stride, hw[0] // zspec.stride * zspec.stride)
        hi = -(-hw[0] // zspec.stride) * zspec.stride
        raise InputError(f"{zspec.name}: image size {hw[0]}x{hw[1]} is not a multiple of the "
                         f"network's stride {zspec.stride}; try {lo} or {hi}")
    return hw


def cache_key(name: str, hw: tuple[int, int], batch: int, opset: int, mish: str) -> str:
    """Hex digest of everything that changes the exported file."""
    material = {
        "name": name, "image_size": list(hw), "batch": batch, "opset": opset, "mish": mish,
        "source": source_hash(), "tilec": _version("tilec"), "torch": _version("torch"),
        "onnx": _version("onnx"),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def cached_path(name: str, *, image_size: int | tuple[int, int] | str | None = None,
                batch: int = 1, opset: int | None = None, mish: str = "op") -> Path:
    """Where :func:`export` keeps (or would keep) this export; the file may not exist yet."""
    from tilec.capture.fx import DEFAULT_OPSET

    zspec = spec(name)
    hw = normalise_size(zspec, image_size)
    opset = DEFAULT_OPSET if opset is None else opset
    key = cache_key(name, hw, batch, opset, mish)
    return cache_dir() / f"{name}-{hw[0]}x{hw[1]}-b{batch}-opset{opset}-{mish}-{key[:16]}.onnx"


def export(name: str, *, image_size: int | tuple[int, int] | str | None = None,
           batch: int = 1, opset: int | None = None, mish: str = "op",
           refresh: bool = False) -> Path:
    """The cached ONNX file of zoo model ``name`` at this size / batch / opset / Mish form.

    Builds and converts the model only when the cache has no such file (or ``refresh``).
    """
    from tilec.capture.fx import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, MISH_FORMS

    if batch <= 0:
        raise InputError(f"--batch: must be a positive integer, got {batch}")
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise InputError(f"--opset: {opset} is outside the range the converter writes "
                         f"({MIN_OPSET}..{MAX_OPSET})")
    if mish not in MISH_FORMS:
        raise InputError(f"--mish: '{mish}' is not one of {', '.join(MISH_FORMS)}")
    path = cached_path(name, image_size=image_size, batch=batch, opset=opset, mish=mish)
    if path.exists() and not refresh:
        return path
    zspec = spec(name)
    hw = normalise_size(zspec, image_size)
    model = export_model_proto(zspec, hw, batch, opset, mish)
    model.metadata_props.add(key="tilec.zoo.cache_key", value=path.stem.rsplit("-", 1)[-1])
    write_atomically(model, path)
    _drop_stale(path)
    return path


def _drop_stale(path: Path) -> None:
    """Remove the cached files of ``path``'s configuration under other keys (older code: the
    key hashes the zoo's and the converter's source, so they are never served again). A process
    still reading one keeps its open file (POSIX); a file already gone is no error."""
    prefix = path.stem.rsplit("-", 1)[0] + "-"
    for other in path.parent.glob(f"{prefix}*.onnx"):
        rest = other.stem[len(prefix):]
        if other != path and "-" not in rest:  # same configuration, only the key differs
            with contextlib.suppress(OSError):
                other.unlink()


def export_model_proto(zspec: ZooSpec, hw: tuple[int, int], batch: int, opset: int,
                       mish: str):  # -> onnx.ModelProto (onnx imported lazily)
    """Build the seeded model and convert it with the torch.fx converter (no file written)."""
    from tilec.capture.fx import module_to_onnx

    module = zspec.build()
    model, _ = module_to_onnx(module, zspec.input_shape(hw, batch), opset=opset, mish=mish,
                              source=zspec.name, graph_name=zspec.name)
    if zspec.tail == "nms":
        from tilec.zoo.nms_tail import append_nms_tail

        append_nms_tail(model, batch, hw)
    for key, value in (("tilec.zoo.name", zspec.name), ("tilec.zoo.seed", str(zspec.seed)),
                       ("tilec.zoo.source", zspec.source), ("tilec.zoo.mish", mish)):
        model.metadata_props.add(key=key, value=value)
    return model


def write_atomically(model, path: Path) -> None:
    """Serialise ``model`` to ``path`` via a temporary file in the same directory + rename."""
    size = model.ByteSize()
    if size > _PROTOBUF_LIMIT:
        raise InternalError(f"{path.name}: {size / 2**30:.1f} GiB exceeds protobuf's 2 GiB "
                            "single-file limit")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(model.SerializeToString())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def clear_cache() -> tuple[int, int]:
    """Delete every cached export (and stray temporaries); return (files, bytes) removed."""
    path = cache_dir(create=False)
    if not path.is_dir():
        return 0, 0
    count = freed = 0
    for f in sorted(path.iterdir()):
        if f.is_file() and f.suffix in (".onnx", ".tmp", ".json"):
            freed += f.stat().st_size
            f.unlink()
            count += 1
    return count, freed
