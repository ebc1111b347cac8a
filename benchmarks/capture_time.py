"""How long ONNX capture takes on a ~70M-parameter model (goal: under 3 s on the 2-core CI box).

Builds (once, cached) a CSP-style detector with onnx.helper: Conv + BatchNormalization + decomposed
Mish, residual Adds, stride-2 downsampling, nearest Resize and Concat in an FPN/PAN neck, ~70M fp32
parameters and ~800 nodes with a dynamic input (N, 3, H, W) -- the size and
shape of Scaled-YOLOv4-P5 without needing the zoo or torch. Then it captures it with ``--batch 2
--image-size 896`` a few times and prints the time of each capture stage (load = read + parse,
check = header/structure/schema checks and overrides, import = onnx-graphsurgeon import and sort,
infer = shape inference, fold = shape-arithmetic folding, verify = post-inference checks).

With ``--external`` the weights live in a side file (``save_as_external_data``). With ``--zoo``
(default on when :mod:`tilec.zoo` provides ``yolov4-p5``) it also times the built-in model: its
export from PyTorch and the capture of the exported file, separately.

Run: ``python benchmarks/capture_time.py [--repeat 3] [--external] [--cache DIR] [--no-zoo]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STAGES = ("load", "check", "import", "infer", "fold", "verify")


class _Builder:
    """Emits Conv-BN-LeakyRelu blocks with deterministic random weights."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.params = 0
        self.n = 0

    def _weight(self, name: str, shape: tuple[int, ...], scale: float = 0.02,
                positive: bool = False) -> str:
        values = (self.rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32)
        if positive:  # BatchNormalization variances
            values = np.abs(values) + 1.0
        self.inits.append(numpy_helper.from_array(values, name))
        self.params += values.size
        return name

    def cbl(self, x: str, cin: int, cout: int, k: int = 1, stride: int = 1) -> str:
        """Conv (no bias) + BatchNormalization + Mish, as an unfused opset-17 exporter writes them.

        Mish is decomposed (x * tanh(softplus(x))), as torch exports it before opset 18.
        """
        i = self.n = self.n + 1
        w = self._weight(f"conv{i}.weight", (cout, cin, k, k))
        bn = [self._weight(f"bn{i}.{p}", (cout,), 0.1, positive=p == "var")
              for p in ("scale", "bias", "mean", "var")]
        self.nodes += [
            helper.make_node("Conv", [x, w], [f"c{i}"], name=f"conv{i}", kernel_shape=[k, k],
                             strides=[stride, stride], pads=[k // 2] * 4),
            helper.make_node("BatchNormalization", [f"c{i}", *bn], [f"b{i}"], name=f"bn{i}",
                             epsilon=1e-3),
            helper.make_node("Softplus", [f"b{i}"], [f"sp{i}"], name=f"softplus{i}"),
            helper.make_node("Tanh", [f"sp{i}"], [f"th{i}"], name=f"tanh{i}"),
            helper.make_node("Mul", [f"b{i}", f"th{i}"], [f"a{i}"], name=f"mish{i}"),
        ]
        return f"a{i}"

    def op(self, op_type: str, inputs: list[str], **attrs: object) -> str:
        self.n += 1
        out = f"{op_type.lower()}{self.n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def build_model(seed: int = 0) -> onnx.ModelProto:
    """A ~70M-parameter, ~1000-node detector-shaped network with input (N, 3, H, W).

    Stage depths and widths follow Scaled-YOLOv4-P5's backbone (1, 3, 15, 15, 7 residual blocks at
    64 ... 1024 channels; one more at 1024 here to reach ~70M parameters), then an SPP-style entry,
    a top-down FPN and a bottom-up PAN path with three outputs.
    """
    b = _Builder(seed)
    x = b.cbl("images", 3, 32, 3)
    skips = []
    for cout, blocks in ((64, 1), (128, 3), (256, 15), (512, 15), (1024, 8)):
        x = b.cbl(x, cout // 2, cout, 3, 2)
        part = b.cbl(x, cout, cout // 2)  # CSP: half the channels bypass the residual blocks
        y = b.cbl(x, cout, cout // 2)
        for _ in range(blocks):
            y = b.op("Add", [y, b.cbl(b.cbl(y, cout // 2, cout // 2), cout // 2, cout // 2, 3)])
        x = b.cbl(b.op("Concat", [y, part], axis=1), cout, cout)
        skips.append((x, cout))
    scales = "up_scales"
    b.inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), scales))

    def stack(x: str, width: int, cin: int) -> str:
        x = b.cbl(x, cin, width)
        for _ in range(3):
            x = b.cbl(b.cbl(x, width, width, 3), width, width)
        return x

    x = b.cbl(b.cbl(b.cbl(x, 1024, 512), 512, 1024, 3), 1024, 512)  # SPP-style neck entry
    levels = [(x, 512)]
    for skip, c_skip in (skips[3], skips[2]):  # top-down: upsample and join the finer map
        width = c_skip // 2
        up = b.op("Resize", [b.cbl(x, levels[-1][1], width), "", scales], mode="nearest")
        x = stack(b.op("Concat", [b.cbl(skip, c_skip, width), up], axis=1), width, 2 * width)
        levels.append((x, width))
    outs = [b.cbl(x, levels[-1][1], 2 * levels[-1][1], 3)]
    for coarse, width in reversed(levels[:-1]):  # bottom-up: downsample and join the coarser map
        down = b.cbl(x, width // 2, width, 3, 2)
        x = stack(b.op("Concat", [down, coarse], axis=1), width, 2 * width)
        outs.append(b.cbl(x, width, 2 * width, 3))
    graph = helper.make_graph(
        b.nodes, "capture_bench",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="tilec-benchmark")
    model.ir_version = 8
    return model


def cached_model(cache: Path, external: bool) -> Path:
    """Build the benchmark model once into ``cache`` (a few seconds) and return its path."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / ("capture_bench_ext.onnx" if external else "capture_bench.onnx")
    if not path.exists():
        t0 = time.perf_counter()
        model = build_model()
        tmp = path.with_suffix(".tmp")
        if external:
            onnx.save_model(model, str(tmp), save_as_external_data=True,
                            all_tensors_to_one_file=True, location=path.stem + ".weights",
                            size_threshold=1024)
        else:
            onnx.save_model(model, str(tmp))
        tmp.rename(path)
        print(f"built {path} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return path


def time_capture(path: Path, repeat: int, **kwargs: object) -> tuple[object, list[dict]]:
    from tilec.capture.onnx_file import capture_onnx

    runs, captured = [], None
    for _ in range(repeat):
        captured = None  # free the previous graph first: two 280 MB models would compete
        t0 = time.perf_counter()
        captured = capture_onnx(path, **kwargs)
        total = time.perf_counter() - t0
        runs.append({**captured.seconds, "total": total})
    return captured, runs


def report(label: str, captured, runs: list[dict], extra: str = "") -> None:
    from tilec.opinfo import build_graph_info

    info = build_graph_info(captured.graph, weight_bits=32, act_bits=32)
    shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in captured.input_shapes.items())
    print(f"\n{label}: {info.params / 1e6:.1f}M parameters, {len(captured.graph.nodes)} nodes, "
          f"input {shapes}{extra}")
    print("  " + "  ".join(f"{s:>7}" for s in (*STAGES, "total")) + "   (seconds)")
    for run in runs:
        print("  " + "  ".join(f"{run.get(s, 0.0):7.3f}" for s in (*STAGES, "total")))
    totals = [r["total"] for r in runs]
    print(f"  capture total: median {statistics.median(totals):.2f} s, best {min(totals):.2f} s "
          f"over {len(totals)} runs (goal < 3 s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--external", action="store_true",
                        help="also time the model saved with external data")
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "tilec" / "bench")
    parser.add_argument("--no-zoo", action="store_true", help="skip the zoo's yolov4-p5")
    args = parser.parse_args()

    print(f"python {sys.version.split()[0]}, onnx {onnx.__version__}, {os.cpu_count()} cores")
    path = cached_model(args.cache, external=False)
    captured, runs = time_capture(path, args.repeat, batch=2, image_size=896)
    report("synthetic CSP detector", captured, runs,
           f", file {path.stat().st_size / 2**20:.0f} MiB")
    if args.external:
        ext = cached_model(args.cache, external=True)
        captured, runs = time_capture(ext, args.repeat, batch=2, image_size=896)
        report("same, weights as external data", captured, runs)
    captured = None

    if not args.no_zoo:
        try:
            from tilec import zoo

            available = "yolov4-p5" in zoo.names()
        except (ImportError, AttributeError):
            available = False
        if not available:
            print("\nzoo: yolov4-p5 not available yet; skipped")
        else:
            t0 = time.perf_counter()
            exported = zoo.export("yolov4-p5", image_size=(896, 896), batch=2)
            export_s = time.perf_counter() - t0
            captured, runs = time_capture(Path(exported), args.repeat)
            report("zoo yolov4-p5 (exported file)", captured, runs,
                   f"; export from PyTorch took {export_s:.1f} s (the zoo caches it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
