"""Training logs in the reference's format, and their curves.

log.txt: one header line of column names and one line per epoch, every field followed by a tab,
numbers as %.6f. ``Logger`` writes a log (``resume=True`` appends to an existing one); reading a
log for its curves (``read_log``, ``LoggerMonitor``, ``save_curves``) never opens it for writing,
so the logs of a finished or read-only run can be plotted.
"""
import argparse
import math
import os
import sys
import zlib
from typing import Callable, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # runs write files; no display is needed or assumed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..atomic import atomic_write  # noqa: E402
from ..files import not_writable_as_file, read_regular  # noqa: E402
from ..progress import plural  # noqa: E402
from .columns import ACCURACIES, LOSSES  # noqa: E402

__all__ = ["LogError", "picture_formats", "check_output", "draw_figure", "Logger", "LoggerMonitor",
           "savefig", "read_log", "plot_columns", "axis_label", "save_curves"]


def savefig(fname: str, dpi: Optional[int] = None) -> None:
    """The current figure as ``fname``, in the format its extension names, written whole or not
    at all (a full disk leaves the previous picture)."""
    extension = os.path.splitext(fname)[1].lstrip(".").lower() or None
    atomic_write(fname, lambda f: plt.savefig(f, format=extension, dpi=150 if dpi is None else dpi,
                                              bbox_inches="tight"))


class LogError(Exception):
    """A log.txt that cannot be read or continued; the message names it and says why."""


def picture_formats() -> list:
    """The file extensions matplotlib writes a figure as."""
    figure = plt.figure()
    formats = sorted(figure.canvas.get_supported_filetypes())
    plt.close(figure)
    return formats


def check_output(parser: argparse.ArgumentParser, path: str) -> Optional[int]:
    """For a script writing a figure to ``path``: an unknown picture format is a usage error
    (``parser.error``, exit 2); a missing folder prints one line and returns 1; else None."""
    extension = os.path.splitext(path)[1].lstrip(".").lower()
    formats = picture_formats()
    if extension not in formats:
        parser.error(f"-o {path}: unknown picture format {extension!r}; use one of "
                     f"{', '.join(sorted(formats))}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        print(f"error: -o {path}: no folder {folder}", file=sys.stderr)
        return 1
    problem = not_writable_as_file(path)
    if problem:
        print(f"error: -o {problem}", file=sys.stderr)
        return 1
    return None


def draw_figure(draw: Callable[[], None], path: str) -> int:
    """Run ``draw()``, which reads logs and saves a figure at ``path``; a log that cannot be
    read or a figure that cannot be written costs one line on stderr. Returns the exit code."""
    try:
        draw()
    except (FileNotFoundError, KeyError, LogError, ValueError) as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: cannot write {path}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


# A log.txt row is about 60 bytes: a million epochs' rows stay far below this.
MAX_LOG_BYTES = 64 * 2 ** 20


def read_log(fpath: str) -> tuple[list[str], dict[str, list[float]]]:
    """(names, {name: [values]}) of a log.txt; LogError for an empty, binary or garbled one."""
    try:
        text = read_regular(fpath, MAX_LOG_BYTES).decode("utf-8")
        lines = [line for line in text.splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise LogError(f"{fpath} is not a text log (log.txt)") from None
    except OSError as e:
        raise LogError(f"cannot read {fpath}: {e.strerror or e}") from e
    if not lines:
        raise LogError(f"{fpath} is empty: no header of column names")
    names = [n for n in lines[0].rstrip("\t").split("\t")]
    numbers = {n: [] for n in names}
    for i, line in enumerate(lines[1:], start=2):
        fields = line.rstrip("\t").split("\t")
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values = []
        if len(values) != len(names):
            raise LogError(f"{fpath} line {i} is not a row of {len(names)} numbers: "
                           f"{line[:60]!r}")
        if not all(math.isfinite(v) for v in values):
            raise LogError(f"{fpath} line {i} holds a number that is not finite: {line[:60]!r}")
        for name, value in zip(names, values):
            numbers[name].append(value)
    return names, numbers


class Logger:
    def __init__(self, fpath: str, resume: bool = False, keep_rows: Optional[int] = None,
                 saved: Optional[dict] = None):
        """Open ``fpath`` for a new log, or with ``resume`` for appending. ``keep_rows`` cuts a
        resumed log to that many data rows first, so epochs that ran after the checkpoint being
        resumed (a crash between log and checkpoint) are not logged twice. ``saved`` (the
        checkpoint's ``{"names", "rows"}``) rebuilds a resumed log that is missing, garbled or
        short of rows; without it such a log is a LogError, never silently renumbered."""
        self.fpath = fpath
        self.names, self.numbers = [], {}
        if resume and (os.path.isfile(fpath) or keep_rows):
            self._resume(keep_rows, saved)
            self.file = open(fpath, "a")
        else:
            self.file = open(fpath, "w")

    def _resume(self, keep_rows, saved):
        try:
            if not os.path.isfile(self.fpath):
                raise LogError(f"{self.fpath} is missing")
            self.names, self.numbers = read_log(self.fpath)
            have = self._row_count()
            if keep_rows is not None and have < keep_rows:
                raise LogError(f"{self.fpath} has {have} rows, the checkpoint {keep_rows} epochs")
        except LogError as e:
            if not saved or len(saved["rows"]) < (keep_rows or 0):
                raise LogError(f"{e}; the checkpoint holds no rows to rebuild it from: restore "
                               f"the log, or train into a new run folder (-c)") from None
            print(f"==> {e}: rebuilt from the checkpoint's rows")
            self.names = list(saved["names"])
            self.numbers = {n: [row[i] for row in saved["rows"]]
                            for i, n in enumerate(self.names)}
        if keep_rows is not None:
            for name in self.names:
                self.numbers[name] = self.numbers[name][:keep_rows]
        self._rewrite()

    def _row_count(self):
        return len(self.numbers[self.names[0]]) if self.names else 0

    def rows(self) -> dict:
        """{"names", "rows"}: the log so far, as a checkpoint keeps it."""
        return {"names": list(self.names),
                "rows": [[self.numbers[n][i] for n in self.names]
                         for i in range(self._row_count())]}

    def _rewrite(self):
        tmp = self.fpath + ".tmp"
        with open(tmp, "w") as f:
            f.write(self._line(self.names))
            for row in self.rows()["rows"]:
                f.write(self._line(f"{value:.6f}" for value in row))
        os.replace(tmp, self.fpath)

    @staticmethod
    def _line(fields):
        return "".join(f"{field}\t" for field in fields) + "\n"

    def set_names(self, names: Sequence[str]) -> None:
        if self.names:  # resumed: the header is already there
            if list(names) != self.names:
                raise ValueError(f"log {self.fpath} has columns {self.names}, not {list(names)}")
            return
        self.names = list(names)
        self.numbers = {n: [] for n in self.names}
        self.file.write(self._line(self.names))
        self.file.flush()

    def append(self, numbers: Sequence[float]) -> None:
        if len(numbers) != len(self.names):
            raise ValueError(f"expected {len(self.names)} numbers, got {len(numbers)}")
        written = [f"{float(num):.6f}" for num in numbers]
        for name, text in zip(self.names, written):
            self.numbers[name].append(float(text))  # as the file holds it, resumed or not
        self.file.write(self._line(written))
        self.file.flush()

    def close(self) -> None:
        self.file.close()


PALETTE = plt.get_cmap("tab10").colors


def group_color(label: str) -> tuple:
    """The colour of a curve's label, the same in every figure (plot.py, summarize.py)."""
    return PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]


def legend_outside(axis: plt.Axes) -> None:
    """The legend right of the axes, so it never hides a curve or its band (the saved figure
    grows to hold it: savefig's tight box)."""
    axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                framealpha=1, fontsize="small")  # EPS has no transparency


def log_scale_if_wide(axis: plt.Axes, values: Sequence[float]) -> None:
    """A log y axis where positive values span more than two decades: one diverged epoch
    (a loss of 35,000) would otherwise flatten every other to a line at 0."""
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 100:
        axis.set_yscale("log")


def plot_columns(numbers: dict, names: list, title: str = "") -> None:
    """Columns ``names`` of a read log (``numbers``: name -> values) against the epoch, on the
    current figure, with whole-epoch ticks; each labelled "title (name)" when a title is given,
    coloured by that label; the legend outside the axes."""
    for name in names:
        values = numbers[name]
        label = f"{title} ({name})" if title else name
        plt.plot(range(1, len(values) + 1), values, label=label,
                 color=group_color(label) if title else None)
    plt.xlabel("Epoch")
    plt.gca().xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.5
    if names:  # a log without these columns leaves the axes empty, and nothing to explain
        legend_outside(plt.gca())
    plt.grid(True)


def axis_label(names: list) -> str:
    """The y-axis label of columns ``names``: their name, with the unit of accuracies."""
    label = " / ".join(names)
    return label + (" (%)" if all("Acc." in n for n in names) else "")


class LoggerMonitor:
    """Several logs on one figure: ``paths`` maps a label to a log.txt (read, never written)."""

    def __init__(self, paths: dict[str, str]):
        self.logs = []
        for title, path in paths.items():
            if not os.path.isfile(path):
                raise FileNotFoundError(f"no log at {path}")
            self.logs.append((title, path) + read_log(path))

    def plot(self, names: Optional[Sequence[str]] = None) -> None:
        plt.figure()
        for title, path, columns, numbers in self.logs:
            missing = [n for n in (names or []) if n not in columns]
            if missing:
                raise KeyError(f"{path} has no column {missing[0]!r}; "
                               f"columns: {', '.join(columns)}")
            plot_columns(numbers, columns if names is None else names, title)
        shown = names or self.logs[0][2]
        plt.ylabel(axis_label(shown))
        if all("Loss" in n for n in shown):
            log_scale_if_wide(plt.gca(), [v for _, _, _, numbers in self.logs
                                          for n in shown for v in numbers.get(n, [])])
        plt.title(f"{axis_label(shown)} of {plural(len(self.logs), 'run')}")


def save_curves(log_path: str) -> None:
    """log.eps and log.png beside ``log_path``: losses and accuracies against the epoch, titled
    with the run folder's name."""
    columns, numbers = read_log(log_path)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for axis, names, ylabel in ((left, LOSSES, "Loss"), (right, ACCURACIES, "Accuracy (%)")):
        plt.sca(axis)
        plot_columns(numbers, [n for n in names if n in columns])
        axis.set_ylabel(ylabel)
        if ylabel == "Loss":
            log_scale_if_wide(axis, [v for n in names if n in columns for v in numbers[n]])
    run = os.path.basename(os.path.dirname(os.path.abspath(log_path)))
    fig.suptitle(f"{run}: {plural(len(numbers[columns[0]]) if columns else 0, 'epoch')}")
    fig.tight_layout()
    base = os.path.splitext(log_path)[0]
    for ext in ("eps", "png"):
        savefig(f"{base}.{ext}")
    plt.close(fig)
