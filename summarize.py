#!/usr/bin/env python
"""Results over seeds: a table of each group's final and best Valid Acc. (mean +- std, median, n;
for runs with --val-split, whose Valid Acc. is the held-out split's, also the test split's score
of the final and the best weights) and its mean curve with a min-max band.

    python summarize.py checkpoints/cifar10/*-seed*                    # grouped by their flags
    python summarize.py --group BN='checkpoints/cifar10/resnet-20-seed*' \\
                        --group GN+WS='checkpoints/cifar10/l_resnet-20-seed*' -o seeds.png
"""
import argparse
import sys

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from utils.records.logger import (check_output, draw_figure, group_color, legend_outside,
                                  picture_formats, savefig)
from utils.progress import plural
from utils.records.columns import VALID_ACC
from utils.records.summary import (distinct_folders, final_and_best, group_by_flags,
                                   group_by_globs, mean_curve, read_run, stats)


def table(groups):
    """The printed table: one row per group."""
    width = max(len("group"), *(len(label) for label in groups))
    lines = [f"{'group':<{width}}  {'n':>3}  {f'final {VALID_ACC} mean +- std':>28}  "
             f"{'median':>7}  {f'best {VALID_ACC} mean +- std':>27}  {'median':>7}"]
    tested = any(run.test for runs in groups.values() for run in runs)
    if tested:  # --val-split runs: the test split, scored once at the end of each
        lines[0] += f"  {'test (final) mean +- std':>24}  {'test (best) mean +- std':>23}"
    notes = []
    for label, runs in groups.items():
        final, best = final_and_best(runs)
        line = (f"{label:<{width}}  {final.n:>3}  {final.mean:>18.2f} +- {spread(final)}"
                f"  {final.median:>7.2f}  {best.mean:>17.2f} +- {spread(best)}"
                f"  {best.median:>7.2f}")
        held = [run for run in runs if run.test]
        if tested and held:
            for name, size in (("final", 14), ("best", 13)):
                test = stats(run.test.get(name, float("nan")) for run in held)
                line += f"  {test.mean:>{size}.2f} +- {spread(test)}"
        elif tested:
            line += f"  {'-':>24}  {'-':>23}"  # no run of the group held out a split
        if held and len(held) != len(runs):
            notes.append(f"note: {label} mixes {len(held)} run(s) with --val-split (their "
                         f"{VALID_ACC} is the held-out split's, their test columns over them "
                         f"alone) and {len(runs) - len(held)} without (their {VALID_ACC} is "
                         f"the test split's): not one measure")
        lines.append(line)
    lines += notes
    if any(len(runs) == 1 for runs in groups.values()):
        lines.append("(n/a: the sample std of a single run is undefined)")
    for runs in groups.values():
        for run in runs:
            if run.unfinished:
                lines.append(f"note: {run.folder} has {len(run.accuracies)} of its "
                             f"{run.planned_epochs} epochs; its final is its last epoch so far")
    return "\n".join(lines)


def spread(stats):
    """The sample std, or n/a for a single run (its sample std is undefined, not 0)."""
    return f"{stats.std:5.2f}" if stats.std is not None else "  n/a"


def draw(groups, path):
    plt.figure(figsize=(7, 4.5))
    for label, runs in groups.items():
        mean, low, high = mean_curve(runs)
        epochs = range(1, len(mean) + 1)
        color = group_color(label)
        plt.plot(epochs, mean, label=f"{label} (n={len(runs)})", color=color)
        plt.fill_between(epochs, low, high, color=color, alpha=0.2, linewidth=0)
    plt.xlabel("Epoch")
    plt.ylabel(f"{VALID_ACC} (%): mean, min-max band")
    plt.title(f"{VALID_ACC} over seeds: {plural(len(groups), 'group')}")
    plt.gca().xaxis.set_major_locator(MaxNLocator(integer=True))
    legend_outside(plt.gca())
    plt.grid(True)
    savefig(path)
    plt.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("runs", nargs="*", help="run folders (log.txt and run.json), grouped "
                                                "by the recorded flags that differ, seed aside")
    parser.add_argument("--group", action="append", metavar="LABEL=GLOB",
                        help="a group of the run folders matching GLOB (repeat per group)")
    parser.add_argument("-o", "--output", default="summary.png",
                        help=f"the curves, their format by the extension: "
                             f"{', '.join(picture_formats())} (default: summary.png)")
    args = parser.parse_args(argv)
    if bool(args.runs) == bool(args.group):
        parser.error("give run folders, or --group LABEL=GLOB options, not both or neither")
    if check_output(parser, args.output):
        return 1

    def summarise():
        groups = (group_by_globs(args.group) if args.group else
                  group_by_flags([read_run(f) for f in distinct_folders(args.runs)]))
        print(table(groups))
        draw(groups, args.output)
    return draw_figure(summarise, args.output)


if __name__ == "__main__":
    sys.exit(main())
