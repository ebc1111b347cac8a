"""``tilec compile MODEL --target T``: does it fit? A verified plan (exit 0) or a diagnosis (1)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator

from tilec.commands.common import (
    add_model_args,
    console,
    output_file,
    positive_float,
    split_names,
)
from tilec.errors import EXIT_DOES_NOT_FIT, EXIT_FITS, InputError
from tilec.plan.model import STATUS_FITS, Plan


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "compile", parents=[parent], help="plan MODEL onto a target: fits, or why not",
        description="Capture, lower and place MODEL on the target's tiles. Prints a verified "
                    "plan's summary (exit 0) or an out-of-memory diagnosis with what would fit "
                    "(exit 1; also for 'unknown' when the search limit is reached). With "
                    "--what-if, a plan that fits also says how far it can grow.")
    add_model_args(p)
    p.add_argument("--host-ops", choices=("auto", "none"), default="auto",
                   help="ops the chip cannot run at the graph's head or tail (detector "
                        "post-processing: NMS, TopK, RoiAlign, ...): 'auto' runs them on the "
                        "host, the transfer at the cut priced in the latency; 'none' refuses "
                        "the model (default: auto)")
    p.add_argument("--precision", "-p", default=None,
                   help="fp32 | fp16 | int8 | int4 | int2 (default: the target's), or auto / "
                        "auto:FLOOR: choose each layer's precision, from the target's default "
                        "down to FLOOR, to fit with the least measured error")
    p.add_argument("--sensitivity", choices=("measured", "entropy"), default=None,
                   help="with --precision auto: how each layer's sensitivity is estimated -- "
                        "'measured' on onnxruntime one layer at a time (cached per model), or "
                        "'entropy', EAGL's weight-entropy proxy (default measured)")
    p.add_argument("--save-precision-map", type=output_file, metavar="FILE", default=None,
                   help="with --precision auto: write the chosen map in the --precision-map "
                        "format")
    p.add_argument("--precision-map", default=None, metavar="FILE",
                   help="per-layer precisions (see `tilec lower --help`)")
    p.add_argument("--passes", default=None, metavar="A,B,C",
                   help="lowering passes to run instead of the target's default pipeline")
    p.add_argument("--time-limit", type=positive_float, default=10.0, metavar="S",
                   help="CP-SAT time limit in seconds per solve (default 10)")
    p.add_argument("--no-what-if", action="store_true",
                   help="skip the what-if search when the model does not fit")
    p.add_argument("--what-if", action="store_true",
                   help="also search a model that fits: the largest batch and image size and "
                        "the highest precision that still fit, the smallest SRAM per tile it "
                        "needs (off by default: a fitting compile stays fast)")
    p.add_argument("--verify", choices=("pipeline", "pass", "off"), default="pipeline",
                   help="how the lowering passes are proved equivalent on onnxruntime: each run "
                        "of exact passes once (default), each pass on its own, or not at all "
                        "(for a model onnxruntime cannot run; the plan is still verified)")
    p.add_argument("--band", choices=("on", "off"), default="on",
                   help="check the verdict over the plausible ranges of the target's fitted "
                        "and modelling constants ([ranges] in its TOML): 'fits' / 'does not "
                        "fit' are robust only if they hold across them, else borderline "
                        "(default on; off saves the ~2 + 2 x constants extra plans)")
    p.add_argument("--chips", type=chips_arg, default=None, metavar="N|auto",
                   help="partition over N chips of a chip system (--target m2000, bow-2000, "
                        "northpole-x4 or a system TOML), or 'auto': the fewest that fit "
                        "(default for a system target: auto)")
    p.add_argument("--mode", choices=("pipeline", "sharded", "replicate"), default=None,
                   help="with --chips: 'pipeline' (contiguous stages, one per chip, one batch "
                        "per slowest stage; the default), 'sharded' (the same cut run one "
                        "stage after the other), 'replicate' (the batch split over the chips)")
    p.add_argument("--json", type=output_file, metavar="FILE",
                   help="write the plan / diagnosis as JSON")
    p.add_argument("--html", type=output_file, metavar="FILE",
                   help="write a self-contained HTML report")
    p.add_argument("--trace", type=output_file, metavar="FILE",
                   help="write a Chrome/Perfetto trace of the schedule")
    p.add_argument("--onnx", type=output_file, metavar="FILE",
                   help="write the lowered model annotated with its placement (for Netron)")
    p.add_argument("--verbose", "-v", action="store_true", help="also print the per-op table")
    p.set_defaults(func=run)


@contextlib.contextmanager
def _progress(args: argparse.Namespace) -> Iterator[object]:
    """A transient spinner naming the running stage; off with --quiet or when not on a terminal."""
    if args.quiet or not sys.stderr.isatty():
        yield None
        return
    err = console(args, stderr=True)
    with err.status("capturing ...") as status:
        def update(stage: str, fraction: float | None = None) -> None:
            pct = f" {fraction:.0%}" if fraction is not None else ""
            status.update(f"{stage}{pct} ...")
        yield update


def write_outputs(plan: Plan, args: argparse.Namespace, lowered_graph=None) -> None:
    """Write the files the flags ask for (shared with `tilec report`)."""
    if getattr(args, "json", None):
        plan.save(args.json)
    if getattr(args, "html", None):
        from tilec.report.html import write_html

        write_html(plan, args.html)
    if getattr(args, "trace", None):
        from tilec.report.trace import write_trace

        write_trace(plan, args.trace)
    if getattr(args, "onnx", None):
        if plan.chips is not None:
            raise InputError("--onnx: not written for a multi-chip plan yet (use --json, "
                             "--html or --trace)")
        from tilec.report.annotate import write_annotated_onnx

        write_annotated_onnx(plan, args.onnx, graph=lowered_graph)


def chips_arg(text: str) -> int | str:
    """argparse type for --chips: a positive integer or 'auto'."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is neither a chip count nor 'auto'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from tilec.compile import CompileOptions, compile_model
    from tilec.report.terminal import print_plan
    from tilec.targets import load_target
    from tilec.targets.system import is_system

    if args.what_if and args.no_what_if:
        raise InputError("--what-if and --no-what-if: choose one")
    from tilec.precision import is_auto

    auto = is_auto(args.precision)
    if not auto and (args.sensitivity or args.save_precision_map):
        flag = "--sensitivity" if args.sensitivity else "--save-precision-map"
        raise InputError(f"{flag} applies only to --precision auto")
    if is_system(args.target) or args.chips is not None or args.mode is not None:
        if auto:
            raise InputError("--precision auto: not available over several chips yet (ask one "
                             "chip: --target with a chip, without --chips)")
        return _run_system(args)
    target = load_target(args.target)
    if auto:
        from tilec.precision.auto import parse_spec

        parse_spec(args.precision, target)  # bad spelling: one line, before any work
    with _progress(args) as update:
        options = CompileOptions(
            batch=args.batch, image_size=args.image_size, input_shape=args.input_shape,
            precision=args.precision, precision_map=args.precision_map,
            passes=split_names(args.passes, "--passes"), time_limit=args.time_limit,
            what_if=not args.no_what_if, what_if_fits=args.what_if, progress=update,
            host_ops=args.host_ops, verify=args.verify,
            band=args.band == "on",
        )
        if auto:
            from tilec.precision.auto import compile_auto, save_map

            plan, lowered, run_auto = compile_auto(
                args.model, target, options, spec_text=args.precision,
                method=args.sensitivity or "measured")
        else:
            plan, lowered = compile_model(args.model, target, options)
    print_plan(plan, console(args), verbose=args.verbose)
    if auto and run_auto.cached and not args.quiet:
        console(args).print("  (the measured sensitivity was read from the cache, "
                            "$TILEC_CACHE_DIR/precision)", style="dim")
    if auto and args.save_precision_map:
        said = save_map(run_auto, args.save_precision_map, args.model, target)
        if not args.quiet:
            console(args, stderr=True).print(said, style="dim")
    write_outputs(plan, args, lowered.graph)
    return EXIT_FITS if plan.status == STATUS_FITS else EXIT_DOES_NOT_FIT


def _run_system(args: argparse.Namespace) -> int:
    """``--chips`` / ``--mode`` or a chip-system target: the model over several chips."""
    from tilec.compile import CompileOptions
    from tilec.compile_system import compile_on_system
    from tilec.report.terminal import print_plan
    from tilec.targets.system import is_system, load_system, system_names

    if not is_system(args.target):
        raise InputError(f"--chips / --mode: '{args.target}' is a single chip; give a chip "
                         f"system ({', '.join(system_names())}, or a system TOML file)")
    if args.what_if:
        raise InputError("--what-if: not available over several chips (ask one chip: "
                         "--target with a chip, without --chips)")
    if args.onnx:
        raise InputError("--onnx: not written for a multi-chip plan yet (use --json, --html "
                         "or --trace)")
    system = load_system(args.target)
    with _progress(args) as update:
        options = CompileOptions(
            batch=args.batch, image_size=args.image_size, input_shape=args.input_shape,
            precision=args.precision, precision_map=args.precision_map,
            passes=split_names(args.passes, "--passes"), time_limit=args.time_limit,
            what_if=False, progress=update, host_ops=args.host_ops, verify=args.verify,
            band=False)
        chips = None if args.chips in (None, "auto") else int(args.chips)
        plan, lowered = compile_on_system(args.model, system, options, chips=chips,
                                          mode=args.mode or "pipeline")
    print_plan(plan, console(args), verbose=args.verbose)
    write_outputs(plan, args, lowered.graph)
    return EXIT_FITS if plan.status == STATUS_FITS else EXIT_DOES_NOT_FIT
