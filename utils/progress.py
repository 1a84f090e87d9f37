"""Per-batch progress: the ``progress`` Bar with the reference's suffix on a terminal, and plain
lines every few batches elsewhere (CI, ``| tee``, nohup), where bar redraws would flood the log.

Showing a batch costs the training loop a host sync (the meters live on the device), which on a
GPU stalls the queue of kernels the CPU has run ahead with. So the bar is redrawn at most every
``interval`` seconds, not after every batch as the reference did: the eye sees no difference."""
import sys
import time
from typing import Optional, TextIO

from progress.bar import Bar

__all__ = ["Progress", "format_time", "format_rate", "plural"]


def format_rate(rate: float) -> str:
    """A rate with about three significant digits and no exponent: 95012, 563, 41.7, 0.83."""
    if rate >= 100:
        return f"{rate:.0f}"
    return f"{rate:.1f}" if rate >= 10 else f"{rate:.2f}"


def plural(count: int, noun: str) -> str:
    """'1 epoch', '2 epochs'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_time(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    def __init__(self, title: str, total: int, enabled: bool = True, lines: int = 10,
                 stream: Optional[TextIO] = None, interval: float = 0.1, first: int = 0):
        """``lines``: how many plain lines per pass when the output is not a terminal;
        ``interval``: the least number of seconds between two redraws of the bar; ``first``:
        the batches already done when this pass starts (a run resumed mid-epoch), which the
        ETA does not count as done at this pass's speed."""
        self.title, self.total, self.enabled, self.interval = title, total, enabled, interval
        self.stream = sys.stdout if stream is None else stream
        self.tty = enabled and self.stream.isatty()
        self.every = max(1, total // max(1, lines))
        # The cursor stays visible: a hidden one is shown again only by finish(), which a run
        # ended by an exception or a second Ctrl-C never reaches (the user would need `reset`).
        self.bar = Bar(title, max=total, file=self.stream, hide_cursor=False) if self.tty else None
        self.first = first
        self.start = time.time()
        self.shown = float("-inf")  # time.monotonic() of the last redraw

    def due(self, done: int) -> bool:
        """Whether batch number ``done`` (1-based) is shown; the caller skips the host sync of
        computing meters for batches that are not. The last batch is always shown."""
        if not self.enabled:
            return False
        if done == self.total:
            return True
        if self.tty:
            return time.monotonic() - self.shown >= self.interval
        return done % self.every == 0

    def update(self, done: int, data_time: float, batch_time: float, loss: float, top1: float,
               top5: float) -> None:
        if not self.due(done):
            return
        elapsed = time.time() - self.start
        eta = elapsed / max(1, done - self.first) * (self.total - done)
        suffix = (f"({done}/{self.total}) Data: {data_time:.3f}s | Batch: {batch_time:.3f}s"
                  f" | Total: {format_time(elapsed)} | ETA: {format_time(eta)}"
                  f" | Loss: {loss:.4f} | top1: {top1:.4f} | top5: {top5:.4f}")
        if self.bar is not None:
            self.shown = time.monotonic()
            self.bar.suffix = suffix
            self.bar.goto(done)
        else:
            print(f"{self.title} {suffix}", file=self.stream, flush=True)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.finish()
