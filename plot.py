#!/usr/bin/env python
"""Compare training curves: any number of log.txt files (or run folders) on chosen columns.

    python plot.py checkpoints/cifar10/resnet-110 checkpoints/cifar10/l_resnet-110 -o cmp.png
    python plot.py a/log.txt b/log.txt --names "Train Loss" "Valid Loss" --labels BN GN+WS -o cmp.pdf
"""
import argparse
import os
import sys

from utils.records.columns import VALID_ACC
from utils.records.logger import LoggerMonitor, check_output, draw_figure, picture_formats, savefig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("logs", nargs="+", help="log.txt files or the run folders holding them")
    parser.add_argument("--names", nargs="+", default=[VALID_ACC],
                        help=f"columns to plot (default: '{VALID_ACC}')")
    parser.add_argument("--labels", nargs="+", help="legend label per log (default: its folder)")
    parser.add_argument("-o", "--output", default="curves.png",
                        help=f"output file, its format by its extension: "
                             f"{', '.join(picture_formats())} (default: curves.png)")
    args = parser.parse_args(argv)
    paths = [os.path.join(p, "log.txt") if os.path.isdir(p) else p for p in args.logs]
    labels = args.labels or [os.path.basename(os.path.dirname(os.path.abspath(p))) for p in paths]
    if len(labels) != len(paths):
        parser.error(f"{len(labels)} labels for {len(paths)} logs")
    if check_output(parser, args.output):
        return 1

    def draw():
        LoggerMonitor(dict(zip(labels, paths))).plot(names=args.names)
        savefig(args.output)
    return draw_figure(draw, args.output)


if __name__ == "__main__":
    sys.exit(main())
