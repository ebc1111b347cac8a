"""``tilec sweep MODEL --target T``: the largest batch that fits at every image size and
precision, latency / throughput / peak occupancy on a grid; CSV, JSON, HTML and plots."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tilec.commands.common import console, positive_float, positive_int
from tilec.errors import EXIT_FITS, EXIT_INTERNAL, InputError


def out_dir(text: str) -> str:
    """argparse type for --out: a directory tilec can create or write (checked before work)."""
    if not text:
        raise argparse.ArgumentTypeError("empty directory name")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is a file; give a directory")
    probe = path if path.exists() else path.parent
    if not probe.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create '{text}': '{probe}' does not exist")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write '{text}': permission denied")
    return text


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "sweep", parents=[parent], help="a model's envelope: largest batch per image size, "
                                        "latency and throughput, with plots",
        description="For every image size and precision, the largest batch that fits (searched "
                    "from 1, steered by the bounds' need, decided by the bounds and verified "
                    "plans) and how the next batch fails; for every grid point (image size x "
                    "batch x precision) "
                    "the verdict, latency, throughput and peak tile occupancy. Writes "
                    "sweep.json, points.csv, frontier.csv, sweep.html and PNG/SVG plots to "
                    "--out. Results are cached by configuration: a re-run or an extended grid "
                    "computes only what is new.")
    p.add_argument("model", metavar="MODEL",
                   help="an .onnx file, file.py:factory, or a built-in model (see `tilec zoo`)")
    p.add_argument("--target", "-t", default="gc200",
                   help="target name or target TOML path (default: gc200)")
    p.add_argument("--image-size", "-s", default=None, metavar="A:B:STEP|S,...",
                   help="image sizes: START:STOP:STEP (STOP included), a list 320,640, or "
                        "HxW items (default: a built-in model's own size)")
    p.add_argument("--batch", "-b", default="1", metavar="1,2,4|1..64",
                   help="grid batches: a list, a range A..B, or both (default 1)")
    p.add_argument("--precision", "-p", default=None, metavar="fp16,fp32",
                   help="precisions (default: the target's)")
    p.add_argument("--input-shape", default=None, metavar="SHAPE",
                   help="whole input shape for an .onnx / .py model (see `tilec compile`)")
    p.add_argument("--batch-cap", type=positive_int, default=64, metavar="N",
                   help="the largest-batch search looks no higher than N (default 64)")
    p.add_argument("-j", "--jobs", type=positive_int, default=None, metavar="N",
                   help="worker processes (default: the cores this process may use)")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run the configurations as Ray tasks on this cluster ('local' starts "
                        "one here; needs pip install 'tilec[ray]')")
    p.add_argument("--out", "-o", type=out_dir, default="tilec-sweep", metavar="DIR",
                   help="output directory (default ./tilec-sweep)")
    p.add_argument("--compare", default=None, metavar="MEASURED.toml",
                   help="measured points to overlay and compare (the format of "
                        "../shared/calibration/*.toml)")
    p.add_argument("--time-limit", type=positive_float, default=10.0, metavar="S",
                   help="CP-SAT time limit per solve, as for `tilec compile` (default 10)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="result cache (default $TILEC_CACHE_DIR/sweep)")
    p.add_argument("--no-cache", action="store_true", help="compute everything again")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tilec.sweep import Grid, Request, ResultCache, sweep
    from tilec.sweep import compare as cmp
    from tilec.sweep.cache import sweep_cache_dir
    from tilec.sweep.grid import check_size, parse_batches, parse_precisions
    from tilec.sweep.page import write_page
    from tilec.sweep.plots import render_plots, write_plots
    from tilec.sweep.result import write_files
    from tilec.sweep.runner import default_jobs
    from tilec.sweep.terminal import print_comparison, print_sweep, progress_bar
    from tilec.sweep.work import Settings
    from tilec.targets import load_target

    target = load_target(args.target)
    batches = parse_batches(args.batch)
    precisions = parse_precisions(args.precision or target.default_precision,
                                  tuple(target.precisions), target.name)
    sizes = _sizes(args.model, args.image_size)
    grid = Grid(image_sizes=sizes, batches=batches, precisions=precisions)
    check_size(grid)
    measured = cmp.load(args.compare) if args.compare else None
    if args.ray and args.jobs:
        raise InputError("--ray and -j: Ray decides the parallelism; give one of them")
    if args.ray:
        try:
            import ray  # noqa: F401 - only whether it is there
        except ImportError:
            raise InputError("--ray: Ray is not installed (pip install 'tilec[ray]')") from None
    req = Request(model=args.model, target=args.target, grid=grid,
                  settings=Settings(time_limit=args.time_limit, cap=args.batch_cap),
                  input_shape=args.input_shape, jobs=args.jobs or default_jobs(), ray=args.ray)
    cache = ResultCache(sweep_cache_dir(args.cache), disabled=args.no_cache)
    out = console(args)
    err = None if args.quiet or not os.isatty(2) else console(args, stderr=True)
    with progress_bar(err) as update:
        result, outcome = sweep(req, cache, update)
    comparison = cmp.compare(measured, result.points, result.frontier) if measured else None
    folder = Path(args.out)
    files = write_files(result, folder)
    rendered = render_plots(result, measured)
    plots = write_plots(rendered, folder)
    page = write_page(result, folder / "sweep.html", rendered, comparison)
    print_sweep(result, out)
    if comparison:
        print_comparison(comparison, out)
    if not args.quiet:
        n = len(plots)
        out.print(f"{outcome.computed} configurations computed, {outcome.cached} from the cache "
                  f"({outcome.lowered} lowering{'s' if outcome.lowered != 1 else ''}); wrote "
                  f"{folder}/: {', '.join(f.name for f in files.values())}, {page.name}, "
                  f"{n} plots")
    failed = [r for r in [*result.points, *result.frontier] if r.get("status") == "error"]
    if failed:  # a bug at some configurations: the rest is written, but the run is no success
        where = "; ".join(f"{r['image_h']}x{r['image_w']} {r['precision']}"
                          + (f" batch {r['batch']}" if "batch" in r else " batch search")
                          + f": {r.get('evidence') or r.get('note')}" for r in failed[:3])
        more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
        print(f"tilec: internal error at {len(failed)} configuration"
              f"{'s' if len(failed) > 1 else ''} of the sweep, marked 'error' in the results "
              f"(the others are written): {where}{more}", file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_FITS


def _sizes(model: str, text: str | None) -> tuple[tuple[int, int], ...]:
    """The grid's image sizes; a built-in model's are checked against its stride here (one line,
    before any work)."""
    from tilec.capture import resolve_kind
    from tilec.sweep.grid import parse_sizes

    kind = resolve_kind(model)
    spec = None
    if kind == "zoo":
        from tilec import zoo

        spec = zoo.spec(model)
    if text is None:
        if spec is None:
            raise InputError(f"--image-size: required for {model} (only a built-in model has "
                             "a default size)")
        return ((spec.default_image_size, spec.default_image_size),)
    sizes = parse_sizes(text)
    if spec is not None:
        bad = [f"{h}x{w}" if h != w else str(h) for h, w in sizes
               if h % spec.stride or w % spec.stride]
        if bad:
            raise InputError(f"--image-size: {model} needs multiples of its stride "
                             f"{spec.stride}; {', '.join(bad[:3])} "
                             f"{'is' if len(bad) == 1 else 'are'} not")
    return sizes
