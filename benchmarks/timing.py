"""The one timing loop of every benchmark: untimed warm-up calls, then timed windows of calls,
each ended by a device sync so queued GPU work is counted."""
import dataclasses
import statistics
import time
from typing import Callable, NamedTuple, Union

import torch

__all__ = ["Timing", "Seconds", "sync", "time_calls", "report"]


@dataclasses.dataclass(frozen=True)
class Timing:
    """``warmup`` untimed calls, then ``windows`` timed windows of ``steps`` calls each."""
    warmup: int = 3
    windows: int = 5
    steps: int = 5


class Seconds(NamedTuple):
    """Seconds per call: the best window's and the median window's."""
    best: float
    median: float


def sync(device: Union[str, torch.device]) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_calls(call: Callable[[], object], timing: Timing,
               device: Union[str, torch.device]) -> Seconds:
    """Seconds per ``call()``, over ``timing``'s windows on ``device``."""
    for _ in range(timing.warmup):
        call()
    sync(device)
    times = []
    for _ in range(timing.windows):
        start = time.perf_counter()
        for _ in range(timing.steps):
            call()
        sync(device)
        times.append((time.perf_counter() - start) / timing.steps)
    return Seconds(min(times), statistics.median(times))


def report(label: str, batch: int, seconds: Seconds) -> None:
    """One line: images per second, best and median, and the median's milliseconds per call."""
    print(f"{label:<44} {batch / seconds.best:10.1f} img/s best "
          f"{batch / seconds.median:10.1f} img/s median ({seconds.median * 1000:.1f} ms/step)")
