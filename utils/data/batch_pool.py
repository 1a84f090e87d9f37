"""Worker batches collated into shared memory that is reused, not made anew for every batch.

torch's default collate gives each batch a fresh shared-memory block: the worker faults in and
zero-fills every page as it writes the batch, and the main process maps the block and faults
in every page again as it reads it, then both unmap it. For a batch of 64 uint8 224x224 crops
(9.6 MB, 2,352 pages) that was most of the main process's time per batch on this project's
2-core machine (5.4 of 6.9 ms, issue 22).

Here each worker keeps ``slots`` blocks and writes each batch into a free one. The main process
keeps its mapping of every block it has received (torch's sharing code then hands back the same
mapping when the same block arrives again), and marks the block free once it has normalised
the batch. The handshake is one shared flag per (worker, slot):

    worker: take a slot whose flag is free, mark it busy, write the batch, send it
    main:   read the batch (into a new float tensor), mark its slot free

so a block is never written while the main process reads it. A worker that finds no free slot
(the main process holds more batches than expected, or an abandoned epoch left slots busy)
collates into a fresh block, as torch does; correct, only slower.
"""
from typing import Optional

import torch
from torch.utils.data import get_worker_info
from torch.utils.data._utils.collate import default_collate

__all__ = ["BatchPool", "Ticket", "pool_slots"]

Ticket = Optional[tuple[int, int]]  # (worker, slot) of a pooled batch; None: a fresh block


def pool_slots(prefetch: int) -> int:
    """Blocks per worker: the ``prefetch`` batches a DataLoader has a worker prepare ahead, the
    one the main process reads (the DataLoader asks for the next batch before handing it
    over), and one spare."""
    return prefetch + 2


class BatchPool:
    """A collate function for (image tensor, label) items that reuses ``slots`` shared blocks
    per worker, for ``workers`` workers. A batch comes out as (images, labels, ticket); the
    consumer calls ``release(ticket)`` once it no longer reads the images."""

    def __init__(self, workers: int, slots: int):
        self.free = torch.ones(max(workers, 1), slots, dtype=torch.bool).share_memory_()
        self._blocks: dict = {}  # in a worker: slot -> its block
        self._mapped: dict = {}  # in the main process: ticket -> the last batch read from it

    def __call__(self, items: list) -> tuple:
        images = [image for image, _ in items]
        labels = torch.tensor([label for _, label in items])
        worker = get_worker_info()
        if worker is None:  # loading in the main process: nothing is shared
            return torch.stack(images), labels, None
        slot = self._take(worker.id)
        if slot is None:
            return default_collate(images), labels, None
        first = images[0]
        shape, numel = (len(images),) + tuple(first.shape), len(images) * first.numel()
        block = self._blocks.get(slot)
        if block is None or block.numel() < numel or block.dtype != first.dtype:
            block = self._blocks[slot] = torch.empty(numel, dtype=first.dtype).share_memory_()
        return torch.stack(images, out=block[:numel].view(shape)), labels, (worker.id, slot)

    def _take(self, worker: int) -> Optional[int]:
        # The flags are read as a list: torch's nonzero on this shared tensor inside a worker
        # tripped an internal assert in a CI run, while the main process wrote a flag.
        for slot, free in enumerate(self.free[worker].tolist()):
            if free:
                self.free[worker, slot] = False
                return slot
        return None

    def release(self, ticket: Ticket, images: torch.Tensor) -> None:
        """The main process is done reading ``images``, the batch of ``ticket``: its block may
        be written again. The images are kept, so that the block's mapping stays."""
        if ticket is not None:
            self._mapped[ticket] = images
            self.free[ticket] = True

    def reset(self) -> None:
        """Every slot free: only while no worker runs (before the workers start)."""
        self.free.fill_(True)
        self._mapped.clear()
