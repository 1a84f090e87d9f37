"""bench.py's command line: a subcommand each for step, pipeline, fold and overhead. Its
options are ``Flag`` values as the scripts' are (the table's own --amp, --compile and
--channels-last; counts checked by a ``Range``), and every other flag of step and fold is a model
flag of cifar.py or imagenet.py, read by that script's own parser."""
import argparse
import tempfile
from typing import Optional

import torch

from utils.settings.flag import INT_MAX, Flag, Range
from utils.settings.flags import argparse_options
from utils.settings.table import SHARED_FLAGS

from .fixtures import SHARED_NPZ
from .fold import bench_fold
from .overhead import bench_overhead
from .imagenet_input import bench_imagenet_pipeline
from .ops import bench_ops
from .pipeline import BENCH_POLICIES, bench_cifar_pipeline
from .step import bench_step
from .timing import Timing

__all__ = ["parser", "main"]

TABLE = {flag.name: flag for flag in SHARED_FLAGS}


def count(least: int, most: int = INT_MAX) -> Range:
    """A whole number from ``least`` to ``most`` (a timing over no step would report a rate of
    0 or divide by it)."""
    return Range(least=least, most=most, words=f"must be from {least} to {most}, got {{value}}")


def option(names: tuple, help_text: str, **fields: object) -> Flag:
    """One of bench.py's own options, as a Flag (the run group: nothing records it)."""
    return Flag(names, "run", help_text, **fields)


def add(parser: argparse.ArgumentParser, flag: Flag, default: object = None) -> None:
    """``flag`` on ``parser``, with ``default`` (else its own); a number outside its Range is
    argparse's error: "argument --batch: must be from 1 to ..., got 0"."""
    kwargs = argparse_options(flag, flag.default if default is None else default)
    if flag.range is not None:
        kwargs["type"] = _checked(flag)
    parser.add_argument(*flag.names, **kwargs)


def _checked(flag: Flag):
    def parse(text):
        value = flag.kind(text)
        problem = flag.range.problem(flag.long, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value
    parse.__name__ = flag.kind.__name__  # argparse's message: "invalid int value: 'x'"
    return parse


BATCH = option(("--batch",), "images per step", kind=int, default=128, range=count(1))
DEVICE = option(("--device",), "the device to time on",
                default="cuda" if torch.cuda.is_available() else "cpu")
TIMING = (option(("--warmup",), "untimed steps first", kind=int, default=3, range=count(0)),
          option(("--windows",), "timed windows (passes)", kind=int, default=5, range=count(1)),
          option(("--steps",), "steps per timed window", kind=int, default=5, range=count(1)))
NPZ = option(("--npz",), "the CIFAR-10 JPEG archive", default=SHARED_NPZ)
MODEL_FLAGS = ("Any other flag is a model flag of cifar.py or imagenet.py (-a, --depth, "
               "--cardinality, --gn-groups, --ghost-batch, ...), read by that script's own "
               "parser; the model is built as training builds it.")


def _subcommand(commands, name: str, help_text: str, description: Optional[str] = None):
    return commands.add_parser(name, allow_abbrev=False, help=help_text, description=description,
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def _add_timing(parser: argparse.ArgumentParser, warmup: int = 3) -> None:
    add(parser, TIMING[0], warmup)
    for flag in TIMING[1:]:
        add(parser, flag)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description="Training speed, measured.", allow_abbrev=False)
    commands = top.add_subparsers(dest="command", required=True)

    step = _subcommand(commands, "step", "training step throughput, with ratios", MODEL_FLAGS)
    add(step, BATCH)
    add(step, option(("--image-size",), "images of this side (none given: 32 for CIFAR "
                                        "models, else 224)", kind=int, range=count(8)))
    for flag in (DEVICE, TABLE["channels_last"], TABLE["amp"], TABLE["compile"]):
        add(step, flag)
    add(step, option(("--no-baseline",), "skip the comparisons: fp32 NCHW eager, and the model "
                                         "without --ghost-batch", kind="switch"))
    add(step, option(("--no-twin",), "skip the BN twin", kind="switch"))
    _add_timing(step)

    pipeline = _subcommand(commands, "pipeline", "images/s a loader delivers, without a model")
    pipeline.add_argument("pipeline", choices=["cifar", "imagenet"])
    add(pipeline, option(("--batch",), "images per batch", kind=int, default=128,
                         range=count(1)))
    add(pipeline, DEVICE)
    add(pipeline, TABLE["channels_last"])
    add(pipeline, option(("--images",), "cifar: images in the dataset; imagenet without "
                                        "--data: JPEGs to make from --npz", kind=int,
                         default=5000, range=count(1)))
    add(pipeline, option(("--data",), "imagenet: imagenet.py's --data (train/ and val/ image "
                                      "folders)"))
    add(pipeline, option(("--npz",), "imagenet without --data: the CIFAR-10 JPEG archive its "
                                     "JPEGs are made from (default: the shared one)"))
    add(pipeline, option(("--workers",), "imagenet: loader workers", kind=int, default=8,
                         range=count(0, 256)))
    add(pipeline, option(("--device-decode",), "imagenet: also time --decode device (decoding "
                                               "on --device)", kind="switch"))
    add(pipeline, option(("--windows",), "timed passes over the data", kind=int, default=5,
                         range=count(1)))
    add(pipeline, option(("--no-alone",), "imagenet: skip timing each contender in a process "
                                          "of its own, as a user runs it", kind="switch"))
    add(pipeline, option(("--policies",), "cifar: also each of "
                         + ", ".join(list(BENCH_POLICIES)[1:]), kind="switch"))

    ops = _subcommand(commands, "ops", "aten ops of one training step, beside the BatchNorm "
                                       "network's", MODEL_FLAGS)
    add(ops, option(("--batch",), "images per micro-batch", kind=int, default=4, range=count(1)))
    add(ops, option(("--image-size",), "images of this side (none given: 32 for CIFAR models, "
                                       "else 64)", kind=int, range=count(8)))
    for flag in (TABLE["iter_size"], TABLE["channels_last"], TABLE["amp"]):
        add(ops, flag)
    add(ops, option(("--top",), "how many of the most frequent ops to list", kind=int,
                    default=8, range=count(0, 1000)))
    add(ops, option(("--no-twin",), "skip the BatchNorm network", kind="switch"))

    fold = _subcommand(commands, "fold", "inference with WS vs with WS folded", MODEL_FLAGS)
    add(fold, option(("--batch",), "images per forward", kind=int, default=128,
                     range=count(1)))
    add(fold, DEVICE)
    _add_timing(fold, warmup=2)

    overhead = _subcommand(commands, "overhead", "cifar.py wall time vs bare compute (CPU "
                                                 "target)")
    add(overhead, NPZ)
    for names, help_text, default in ((("--train",), "training images", 5000),
                                      (("--test",), "images evaluated per epoch", 1000),
                                      (("--epochs",), "epochs per round", 2),
                                      (("--batch",), "training batch", 128),
                                      (("--repeats",), "rounds", 3)):
        add(overhead, option(names, help_text, kind=int, default=default, range=count(1)))
    _add_timing(overhead)
    return top


COMMANDS = {"step": bench_step, "ops": bench_ops, "fold": bench_fold}


def main(argv: Optional[list] = None) -> None:
    """Parse ``argv`` and run its subcommand; what a benchmark writes (JPEGs, run folders)
    lives in one scratch folder, removed at the end."""
    top = parser()
    args, model_flags = top.parse_known_args(argv)
    if "warmup" in vars(args):
        args.timing = Timing(args.warmup, args.windows, args.steps)
    if args.command not in COMMANDS and model_flags:
        top.error(f"unrecognized arguments: {' '.join(model_flags)}")
    if args.command == "pipeline" and args.npz is not None and (
            args.pipeline == "cifar" or args.data is not None):
        top.error("--npz does not apply to " + (
            "pipeline cifar, which times random images" if args.pipeline == "cifar" else
            "pipeline imagenet with --data, which times the images there"))
    if args.command == "pipeline" and args.pipeline == "cifar" and args.no_alone:
        top.error("--no-alone does not apply to pipeline cifar, which times one process")
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        args.scratch = scratch
        if args.command in COMMANDS:
            COMMANDS[args.command](args, model_flags)
        elif args.command == "pipeline":
            (bench_cifar_pipeline if args.pipeline == "cifar" else bench_imagenet_pipeline)(args)
        else:
            bench_overhead(args)
