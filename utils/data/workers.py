"""A DataLoader's worker processes, from their start to their shutdown, and the main process
beside them.

Every loader with workers that this project makes comes from ``data_loader``: its workers ignore
the stop signals (the main process handles them and shuts the workers down), decode under their
parent's pixel limit, and are shut down before the interpreter exits. While they run on the
CPU, the main process does its own share of the loading on one thread
(``one_intra_op_thread``), since they already fill the cores.
"""
import atexit
import contextlib
import dataclasses
import functools
import signal
import weakref
from typing import Any, Iterator, Optional

import torch

from ..stop_signals import STOP_SIGNALS
from .decode import max_pixels, set_max_pixels

__all__ = ["Workers", "data_loader", "stop_workers", "ignore_stop_signals", "own_generator",
           "one_intra_op_thread"]


@dataclasses.dataclass(frozen=True)
class Workers:
    """A DataLoader's worker processes: ``count`` of them (0: load in the main process), each
    holding at most ``prefetch`` batches; ``persistent``: kept between epochs (the training
    loader; an evaluation one frees its workers and their batches between evaluations)."""
    count: int = 4
    prefetch: int = 2
    persistent: bool = True


def own_generator() -> torch.Generator:
    """A generator for a DataLoader's own draws (its workers' base seed, one per iterator): left
    to the global RNG, each new iterator would shift dropout's draws, and a run resumed mid-epoch
    (one more iterator) would not repeat an unstopped one. Nothing here depends on its values:
    every image draws from utils.seeding.image_rng."""
    return torch.Generator().manual_seed(0)


def ignore_stop_signals(worker_id: int) -> None:
    """A DataLoader worker's init: the stop signals (utils.train.stopping: SIGINT, SIGTERM,
    SIGHUP, SIGUSR1) sent to the whole process group (Ctrl-C, a scheduler's kill, a closed
    terminal, SLURM's warning) are the main process's to handle. It finishes the step in flight
    and shuts the workers down; a worker killed first would end the run in a traceback
    instead."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def one_intra_op_thread() -> Iterator[None]:
    """torch's CPU ops run on one thread inside, on as many as before after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def stop_workers(loader: torch.utils.data.DataLoader,
                 iterator: Optional[Iterator] = None) -> None:
    """Shut down a DataLoader's worker processes now (persistent ones too), not at exit."""
    iterator = iterator if iterator is not None else getattr(loader, "_iterator", None)
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    if getattr(loader, "_iterator", None) is iterator:
        loader._iterator = None


# Every DataLoader with workers that data_loader made. At interpreter exit,
# multiprocessing terminates the workers still alive with SIGTERM and waits for them; ours
# ignore SIGTERM (ignore_stop_signals), so a loader still alive then (a persistent training
# loader, kept by a traceback or a global) would make the exit wait forever. Shutting them down
# first, in an exit handler registered after multiprocessing's (so run before it), ends them.
_with_workers = weakref.WeakSet()


@atexit.register
def _stop_all_workers():
    for loader in list(_with_workers):
        stop_workers(loader)


def start_worker(worker_id: int, pixel_limit: int) -> None:
    """A DataLoader worker's init: it ignores the stop signals (ignore_stop_signals) and
    decodes under its parent's pixel limit, whatever the start method (a spawned or
    forkserver worker imports utils.data.decode afresh)."""
    ignore_stop_signals(worker_id)
    set_max_pixels(pixel_limit)


def data_loader(dataset: torch.utils.data.Dataset, workers: Workers,
                **options: Any) -> torch.utils.data.DataLoader:
    """torch's DataLoader of ``dataset`` in ``workers``, whose workers ignore stop signals and
    keep this process's pixel limit (start_worker) and whose own draws leave the global RNG
    alone (own_generator), remembered so that its workers are shut down before exit.
    ``options``: DataLoader's."""
    loader = torch.utils.data.DataLoader(
        dataset, num_workers=workers.count,
        persistent_workers=workers.persistent and workers.count > 0,
        prefetch_factor=workers.prefetch if workers.count > 0 else None,
        worker_init_fn=functools.partial(start_worker, pixel_limit=max_pixels()),
        generator=own_generator(), **options)
    if loader.num_workers > 0:
        _with_workers.add(loader)
    return loader
