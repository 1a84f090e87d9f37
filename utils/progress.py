"""Per-batch progress: the ``progress`` Bar with the reference's suffix on a terminal, and plain
lines every few batches elsewhere (CI, ``| tee``, nohup), where bar redraws would flood the log."""
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
    def __init__(self, title, total, enabled=True, lines=10, stream=None):
        """``lines``: how many plain lines per pass when the output is not a terminal."""
        self.title, self.total, self.enabled = title, total, enabled
        self.stream = sys.stdout if stream is None else stream
        self.tty = enabled and self.stream.isatty()
        self.every = max(1, total // max(1, lines))
        self.bar = Bar(title, max=total, file=self.stream) if self.tty else None
        self.start = time.time()

    def due(self, done):
        """Whether batch number ``done`` (1-based) is shown; the caller skips the host sync of
        computing meters for batches that are not."""
        return self.enabled and (self.tty or done % self.every == 0 or done == self.total)

    def update(self, done, data_time, batch_time, loss, top1, top5):
        if not self.due(done):
            return
        elapsed = time.time() - self.start
        eta = elapsed / done * (self.total - done)
        suffix = (f"({done}/{self.total}) Data: {data_time:.3f}s | Batch: {batch_time:.3f}s"
                  f" | Total: {format_time(elapsed)} | ETA: {format_time(eta)}"
                  f" | Loss: {loss:.4f} | top1: {top1:.4f} | top5: {top5:.4f}")
        if self.bar is not None:
            self.bar.suffix = suffix
            self.bar.goto(done)
        else:
            print(f"{self.title} {suffix}", file=self.stream, flush=True)

    def finish(self):
        if self.bar is not None:
            self.bar.finish()
