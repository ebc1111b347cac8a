"""Model coverage: export standard torchvision models the usual way, compile each, print a table.

    python benchmarks/model_coverage.py           # every model, both exporters, both targets
    python benchmarks/model_coverage.py --models resnet18,ssdlite320_mobilenet_v3_large
    python benchmarks/model_coverage.py --exporter dynamo --targets gc200 --band off --out /tmp/cov

Each model is built with random weights (no download), exported with ``torch.onnx.export`` by
the TorchScript exporter (``dynamo=False``, opset 17, ``dynamic_axes``) and/or the dynamo exporter
(``dynamo=True``, torch 2.13's default: opset 18+, ``dynamic_shapes`` with a
``torch.export.Dim``, weights in ``FILE.data``) -- a dynamic batch axis either way, how most people
export -- and compiled with no flag but ``--target`` (and ``--no-what-if``, which changes no
verdict; ``--band off`` skips the uncertainty band, likewise). The table has one column per
exporter and target: the exit code (0 fits, 1 does not fit, 2 refused as bad input with the
message, 3 internal error; "export failed" where torch could not write the file) and the
wall-clock seconds, then per column the share that compiled (exit 0 or 1) and every message.
The results are in docs/coverage.md.

Needs ``torchvision`` matching the installed torch (``pip install torchvision==0.28.0
torch==2.13.0``). A build whose C++ ops do not load (a CUDA wheel on a CPU-only torch) still
works: the script stands in Python versions of the two ops detection models call
(``torchvision::nms``, ``torchvision::roi_align``) so that the exporter writes them as ONNX
NonMaxSuppression / RoiAlign, exactly as with the real kernels. Timings on a shared machine are
inflated; compare them only within one run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

# name -> (torchvision builder, input H=W, builder kwargs); classifiers, segmentation, detection
MODELS: dict[str, tuple[str, int, dict]] = {
    "resnet18": ("resnet18", 224, {}),
    "resnet50": ("resnet50", 224, {}),
    "resnext50_32x4d": ("resnext50_32x4d", 224, {}),
    "wide_resnet50_2": ("wide_resnet50_2", 224, {}),
    "vgg16": ("vgg16", 224, {}),
    "alexnet": ("alexnet", 224, {}),
    "squeezenet1_1": ("squeezenet1_1", 224, {}),
    "densenet121": ("densenet121", 224, {}),
    "googlenet": ("googlenet", 224, {"aux_logits": False, "init_weights": False}),
    "inception_v3": ("inception_v3", 299, {"aux_logits": False, "init_weights": False}),
    "mobilenet_v2": ("mobilenet_v2", 224, {}),
    "mobilenet_v3_small": ("mobilenet_v3_small", 224, {}),
    "mobilenet_v3_large": ("mobilenet_v3_large", 224, {}),
    "mnasnet1_0": ("mnasnet1_0", 224, {}),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", 224, {}),
    "efficientnet_b0": ("efficientnet_b0", 224, {}),
    "efficientnet_v2_s": ("efficientnet_v2_s", 384, {}),
    "regnet_y_400mf": ("regnet_y_400mf", 224, {}),
    "regnet_x_1_6gf": ("regnet_x_1_6gf", 224, {}),
    "convnext_tiny": ("convnext_tiny", 224, {}),
    "vit_b_16": ("vit_b_16", 224, {}),
    "swin_t": ("swin_t", 224, {}),
    "maxvit_t": ("maxvit_t", 224, {}),
    "fcn_resnet50": ("fcn_resnet50", 520, {"weights_backbone": None, "aux_loss": False}),
    "deeplabv3_mobilenet_v3_large": ("deeplabv3_mobilenet_v3_large", 520,
                                     {"weights_backbone": None, "aux_loss": False}),
    "lraspp_mobilenet_v3_large": ("lraspp_mobilenet_v3_large", 520, {"weights_backbone": None}),
    "ssdlite320_mobilenet_v3_large": ("ssdlite320_mobilenet_v3_large", 320,
                                      {"weights_backbone": None}),
    "fasterrcnn_mobilenet_v3_large_320_fpn": ("fasterrcnn_mobilenet_v3_large_320_fpn", 320,
                                              {"weights_backbone": None}),
    "lstm_classifier": ("lstm", 0, {}),  # not torchvision: nn.LSTM over 32 steps of 64 features
}

QUICK = ("resnet18", "mobilenet_v3_small", "squeezenet1_1")
"""The subset the CI test compiles (tests/test_model_coverage.py)."""

DETECTION = ("ssdlite", "fasterrcnn", "retinanet", "maskrcnn", "keypointrcnn", "fcos")


def _has_ops() -> bool:  # top-level functions: torchvision's scripted code compiles them
    return True


def _assert_has_ops() -> None:
    return None


def load_torchvision():
    """Import torchvision; where its C++ ops did not load, stand in Python versions of nms and
    roi_align (registered under the same names, so the exporter's symbolics apply)."""
    import torch

    try:
        import torchvision
        return torchvision
    except RuntimeError:  # its fake-kernel registrations need the C++ ops it failed to load
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
    sys.modules["torchvision._meta_registrations"] = types.ModuleType(
        "torchvision._meta_registrations")
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
               "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor")

    def nms(dets, scores, iou_threshold):
        """Greedy NMS (what the C++ kernel computes), vectorised per kept box."""
        order = scores.argsort(descending=True)
        keep = []
        suppressed = torch.zeros(len(order), dtype=torch.bool)
        x1, y1, x2, y2 = dets.unbind(1)
        area = (x2 - x1) * (y2 - y1)
        for i in range(len(order)):
            if suppressed[i]:
                continue
            a = order[i]
            keep.append(a)
            rest = order[i + 1:]
            w = (torch.minimum(x2[a], x2[rest]) - torch.maximum(x1[a], x1[rest])).clamp(min=0)
            h = (torch.minimum(y2[a], y2[rest]) - torch.maximum(y1[a], y1[rest])).clamp(min=0)
            inter = w * h
            iou = inter / (area[a] + area[rest] - inter)
            suppressed[i + 1:] |= iou > iou_threshold
        return torch.stack(keep) if keep else torch.zeros(0, dtype=torch.int64)

    import importlib

    import torchvision

    roi_module = importlib.import_module("torchvision.ops.roi_align")  # the module, not the op

    lib.impl("nms", nms, "CPU")
    lib.impl("roi_align", roi_module._roi_align, "CPU")
    for module in (torchvision.extension, torchvision.ops.boxes, roi_module):
        module._has_ops = _has_ops
        module._assert_has_ops = _assert_has_ops
    torchvision._tilec_stub_lib = lib
    return torchvision


@dataclass
class Row:
    name: str
    export_s: float
    results: dict[str, tuple[int, float, str]]  # target -> (exit code, seconds, message)


def build(name: str):
    """(module, example input) with random weights."""
    import torch

    builder, size, kwargs = MODELS[name]
    if builder == "lstm":
        class LstmClassifier(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lstm = torch.nn.LSTM(64, 128, batch_first=True)
                self.fc = torch.nn.Linear(128, 10)

            def forward(self, x):
                out, _ = self.lstm(x)
                return self.fc(out[:, -1])
        return LstmClassifier().eval(), torch.randn(1, 32, 64)
    tv = load_torchvision()
    torch.manual_seed(0)
    kind = ("detection" if any(builder.startswith(d) for d in DETECTION)
            else "segmentation" if builder.split("_")[0] in ("fcn", "deeplabv3", "lraspp")
            else None)
    family = getattr(tv.models, kind) if kind else tv.models
    model = getattr(family, builder)(weights=None, **kwargs).eval()
    return model, torch.randn(1, 3, size, size)


EXPORTERS = ("torchscript", "dynamo")
"""``torch.onnx.export(dynamo=False)`` (TorchScript, opset 17) and the default of torch 2.13
(``dynamo=True``: torch.export, then onnxscript's translation and optimizer, opset 18+; the
weights go to ``FILE.data`` beside the graph, its default)."""


def export(name: str, path: Path, exporter: str = "torchscript") -> float:
    """Export ``name`` to ``path`` as most people do; returns the seconds it took.

    Both exporters keep the batch axis dynamic (detectors, whose input is a list of images, keep
    their example shape): TorchScript with ``dynamic_axes``, dynamo with ``dynamic_shapes`` and a
    ``torch.export.Dim`` -- each exporter's documented way to a deployable file.
    """
    import torch

    t0 = time.perf_counter()
    model, x = build(name)
    detector = any(MODELS[name][0].startswith(d) for d in DETECTION)
    example = ([x[0]],) if detector else (x,)  # detectors take a list of CHW images
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            shapes = None if detector else ({0: torch.export.Dim("batch")},)
            try:
                torch.onnx.export(model, example, str(path), dynamo=True, input_names=["input"],
                                  dynamic_shapes=shapes, verbose=False)
            except Exception as exc:
                if shapes is None:
                    raise
                # torch.export refuses a named Dim on some models exported with a batch-1
                # example (ConvNeXt, Swin: "Constraints violated (batch)", "Invalid ranges
                # [2:1]"); Dim.AUTO, which its message suggests, lets it choose. Noted per row.
                torch.onnx.export(model, example, str(path), dynamo=True, input_names=["input"],
                                  dynamic_shapes=({0: torch.export.Dim.AUTO},), verbose=False)
                NOTES[name] = (f"dynamo export with Dim('batch') failed in torch.export "
                               f"({_reason(exc)}); exported with Dim.AUTO")
        else:
            axes = {} if detector else {"input": {0: "batch"}}
            torch.onnx.export(model, example, str(path), dynamo=False, opset_version=17,
                              input_names=["input"], dynamic_axes=axes)
    return time.perf_counter() - t0


def _reason(exc: BaseException) -> str:
    """One line saying why an export failed: the dynamo exporter's "Exception summary" entry
    (its first line is a generic banner), else the exception's first line."""
    lines = [ln.strip() for ln in f"{type(exc).__name__}: {exc}".splitlines() if ln.strip()]
    for i, line in enumerate(lines[:-1]):
        if line.startswith("## Exception summary"):
            return lines[i + 1][:200]
    return lines[0][:200] if lines else type(exc).__name__


def compile_one(path: Path, target: str, timeout: float,
                band: str = "on") -> tuple[int, float, str]:
    """Run ``tilec compile`` as a user would; (exit code, seconds, last stderr line)."""
    cmd = [sys.executable, "-m", "tilec", "compile", str(path), "--target", target,
           "--no-what-if", "--band", band, "-q"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, time.perf_counter() - t0, f"timed out after {timeout:g} s"
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return proc.returncode, time.perf_counter() - t0, lines[-1] if lines else ""


NOTES: dict[str, str] = {}
"""Per model: how an export departed from the usual call (printed under the table)."""

EXPORT_FAILED = -2
"""The cell's code when the exporter itself could not write the file (torch's failure, not ours)."""


def run(names: list[str], exporters: list[str], targets: list[str], out: Path,
        timeout: float, band: str = "on") -> list[Row]:
    """Export each model with each exporter (re-using files already in ``out``) and compile each
    file for each target; one row per model, one cell per ``exporter:target``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        results: dict[str, tuple[int, float, str]] = {}
        export_s = 0.0
        for exporter in exporters:
            path = out / (f"{name}.onnx" if exporter == "torchscript"
                          else f"{name}.{exporter}.onnx")
            if not path.exists():
                try:
                    export_s += export(name, path, exporter)
                except Exception as exc:  # the exporter cannot handle the model: a cell, next
                    path.unlink(missing_ok=True)
                    path.with_name(path.name + ".data").unlink(missing_ok=True)
                    first = _reason(exc)
                    for t in targets:
                        results[column(exporter, t)] = (EXPORT_FAILED, 0.0,
                                                        f"{exporter} export failed: {first}")
                    continue
            for t in targets:
                results[column(exporter, t)] = compile_one(path, t, timeout, band)
        rows.append(Row(name, export_s, results))
        cells = "  ".join(f"{k} {c} ({s:.1f} s)" for k, (c, s, _) in results.items())
        print(f"  {name}: {cells}", file=sys.stderr, flush=True)
    return rows


def column(exporter: str, target: str) -> str:
    """The table's column name for one exporter and one target."""
    return f"{exporter}:{target}"


def table(rows: list[Row], columns: list[str]) -> str:
    """One line per model, one cell (exit code, seconds) per column, then per-column totals and
    every message of a cell that did not compile (refusals, internal errors, export failures)."""
    width = max(len(r.name) for r in rows) if rows else 10
    cw = max([16] + [len(c) for c in columns])
    head = f"{'model':<{width}}  " + "  ".join(f"{c:>{cw}}" for c in columns)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = []
        for c in columns:
            code, secs, _ = r.results[c]
            text = "export failed" if code == EXPORT_FAILED else f"exit {code} {secs:5.1f} s"
            cells.append(f"{text:>{cw}}")
        lines.append(f"{r.name:<{width}}  " + "  ".join(cells))
    lines.append("")
    for c in columns:
        codes = [r.results[c][0] for r in rows]
        ok = sum(code in (0, 1) for code in codes)
        lines.append(f"{c}: {ok}/{len(codes)} compile (exit 0 or 1), {codes.count(0)} fit, "
                     f"{codes.count(2)} refused, {codes.count(3)} internal errors, "
                     f"{codes.count(-1)} timed out, {codes.count(EXPORT_FAILED)} export failed")
    refused = {(c, r.name, r.results[c][2]) for r in rows for c in columns
               if r.results[c][0] not in (0, 1)}
    for c, name, message in sorted(refused):
        lines.append(f"  {c} {name}: {message}")
    for name, note in sorted(NOTES.items()):
        lines.append(f"  note, {name}: {note}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated subset of: "
                        + ", ".join(MODELS))
    parser.add_argument("--targets", default="gc200,northpole")
    parser.add_argument("--exporter", choices=(*EXPORTERS, "both"), default="both",
                        help="torch.onnx.export with dynamo=False (TorchScript), dynamo=True "
                             "(torch 2.13's default), or both side by side (default)")
    parser.add_argument("--out", default="/tmp/tilec-model-coverage",
                        help="where the exports are kept (re-used when present)")
    parser.add_argument("--band", choices=("on", "off"), default="on",
                        help="the uncertainty band (on: the CLI default; off: faster, changes no "
                             "verdict)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per compile")
    args = parser.parse_args()
    names = args.models.split(",") if args.models else list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s): {', '.join(unknown)}")
    targets = args.targets.split(",")
    exporters = list(EXPORTERS) if args.exporter == "both" else [args.exporter]
    rows = run(names, exporters, targets, Path(args.out), args.timeout, args.band)
    print(table(rows, [column(e, t) for e in exporters for t in targets]))


if __name__ == "__main__":
    main()
