"""Specification of the reused shared-memory batches (utils/data/batch_pool.py): a worker writes
each batch into one of its blocks, the main process reads every batch of a block through one
mapping, and a block is never written while the main process still reads it."""
import torch

from utils.data.batch_pool import BatchPool, pool_slots
from utils.data.workers import Workers, data_loader


class Constant(torch.utils.data.Dataset):
    """Image i: a (4, 5, 3) uint8 tensor filled with i; its label: i."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, i: int) -> tuple:
        return torch.full((4, 5, 3), i, dtype=torch.uint8), i


def batches_of(pool: BatchPool, workers: int = 1, prefetch: int = 2):
    return data_loader(Constant(), Workers(workers, prefetch, persistent=False), batch_size=4,
                       collate_fn=pool)


def expected(first: int) -> torch.Tensor:
    return torch.arange(first, first + 4, dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 4, 5, 3)


def test_released_blocks_are_written_again_and_read_through_one_mapping():
    pool = BatchPool(workers=1, slots=pool_slots(2))
    kept, tickets = [], []  # every batch kept alive: a fresh mapping would have its own address
    for n, (images, labels, ticket) in enumerate(batches_of(pool)):
        assert torch.equal(images, expected(4 * n))
        assert labels.tolist() == list(range(4 * n, 4 * n + 4))
        kept.append(images)
        tickets.append(ticket)
        pool.release(ticket, images)
    assert None not in tickets and len(tickets) == 6
    blocks = {images.untyped_storage().data_ptr() for images in kept}
    assert len(blocks) == len(set(tickets)) < 6  # one mapping per block, not one per batch


def test_a_block_the_main_process_still_reads_is_never_written():
    """The consumer keeps every batch and releases none: the worker, out of free blocks, writes
    the later batches into fresh ones, and what the consumer holds stays as it was."""
    pool = BatchPool(workers=1, slots=1)
    held = [(images, ticket) for images, _, ticket in batches_of(pool, prefetch=2)]
    assert held[0][1] == (0, 0) and all(ticket is None for _, ticket in held[1:])
    for n, (images, _) in enumerate(held):
        assert torch.equal(images, expected(4 * n))


def test_two_workers_each_use_their_own_blocks():
    pool = BatchPool(workers=2, slots=pool_slots(1))
    seen = {}
    for n, (images, _, ticket) in enumerate(batches_of(pool, workers=2, prefetch=1)):
        assert torch.equal(images, expected(4 * n))
        seen.setdefault(ticket[0], set()).add(images.untyped_storage().data_ptr())
        pool.release(ticket, images)
    assert set(seen) == {0, 1} and not seen[0] & seen[1]


def test_loading_in_the_main_process_shares_nothing():
    pool = BatchPool(workers=0, slots=pool_slots(2))
    loader = data_loader(Constant(), Workers(0, 2, persistent=False), batch_size=4,
                         collate_fn=pool)
    assert all(ticket is None for _, _, ticket in loader)


def test_an_abandoned_epoch_leaves_no_slot_busy_for_the_next_workers():
    pool = BatchPool(workers=1, slots=pool_slots(2))
    for _ in batches_of(pool):
        break  # the slots of the batches in flight are never released
    assert not pool.free.all()
    pool.reset()  # as StreamLoader does before its workers start
    assert pool.free.all()
    for images, _, ticket in batches_of(pool):
        assert ticket is not None
        pool.release(ticket, images)
