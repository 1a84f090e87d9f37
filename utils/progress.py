"""Per-batch progress: the ``progress`` Bar with the reference's suffix on a terminal, and plain
lines every few batches elsewhere (CI, ``| tee``, nohup), where bar redraws would flood the log.

Showing a batch costs the training loop a host sync (the meters live on the device), which on a
GPU stalls the queue of kernels the CPU has run ahead with. So the bar is redrawn at most every
``interval`` seconds, not after every batch as the reference did: the eye sees no difference."""
import sys
import time

from progress.bar import Bar

__all__ = ["Progress", "format_time"]


def format_time(seconds):
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    def __init__(self, title, total, enabled=True, lines=10, stream=None, interval=0.1):
        """``lines``: how many plain lines per pass when the output is not a terminal;
        ``interval``: the least number of seconds between two redraws of the bar."""
        self.title, self.total, self.enabled, self.interval = title, total, enabled, interval
        self.stream = sys.stdout if stream is None else stream
        self.tty = enabled and self.stream.isatty()
        self.every = max(1, total // max(1, lines))
        self.bar = Bar(title, max=total, file=self.stream) if self.tty else None
        self.start = time.time()
        self.shown = float("-inf")  # time.monotonic() of the last redraw

    def due(self, done):
        """Whether batch number ``done`` (1-based) is shown; the caller skips the host sync of
        computing meters for batches that are not. The last batch is always shown."""
        if not self.enabled:
            return False
        if done == self.total:
            return True
        if self.tty:
            return time.monotonic() - self.shown >= self.interval
        return done % self.every == 0

    def update(self, done, data_time, batch_time, loss, top1, top5):
        if not self.due(done):
            return
        elapsed = time.time() - self.start
        eta = elapsed / done * (self.total - done)
        suffix = (f"({done}/{self.total}) Data: {data_time:.3f}s | Batch: {batch_time:.3f}s"
                  f" | Total: {format_time(elapsed)} | ETA: {format_time(eta)}"
                  f" | Loss: {loss:.4f} | top1: {top1:.4f} | top5: {top5:.4f}")
        if self.bar is not None:
            self.shown = time.monotonic()
            self.bar.suffix = suffix
            self.bar.goto(done)
        else:
            print(f"{self.title} {suffix}", file=self.stream, flush=True)

    def finish(self):
        if self.bar is not None:
            self.bar.finish()
