"""Reproducibility: where every random draw of a run comes from.

The rule: every random draw is a function of (seed, epoch, index, stream) and of nothing else:
not of the batch layout, the number of processes or workers, or whether the run was stopped and
resumed. Each purpose draws from its own stream, so adding draws to one never shifts another:

    ORDER       the permutation of an epoch's images            (seed, epoch, ORDER)
    AUGMENT     an image's crop and flip                        (seed, epoch, AUGMENT[, image])
    POLICY      an image's AutoAugment/RandAugment/TrivialAugment
                ops and magnitudes on the device (a DataLoader
                path draws them from AUGMENT, after the crop)   (seed, epoch, POLICY)
    REGULARISE  a batch's cutout/mixup/... draws, per process   (seed, epoch, REGULARISE, batch,
                                                                 rank)

That is what makes `--train-batch 8 --iter-size 4` see the pixels of `--train-batch 32`, a
W-process run see what a 1-process run sees, and a resumed run repeat an uninterrupted one.

What the streams do not cover (weight init, dropout, Shake-Shake's coefficients) draws from the
global generators, seeded once by ``seed_everything``; their state travels in every checkpoint
(``rng_state`` / ``set_rng_state``).
"""
import contextlib
import random
from typing import Iterator

import numpy as np
import torch

__all__ = ["ORDER", "AUGMENT", "REGULARISE", "POLICY", "mixed_seed", "stream_generator",
           "batch_generator", "image_rng", "seed_everything", "rng_state", "set_rng_state"]

ORDER, AUGMENT, REGULARISE, POLICY = 0, 1, 2, 3


def mixed_seed(*values: int) -> int:
    """A 63-bit seed mixed from several integers (numpy's SeedSequence hashing)."""
    state = np.random.SeedSequence([int(v) for v in values]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def stream_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A CPU generator of one stream of one epoch; the same on every device and process."""
    return torch.Generator().manual_seed(mixed_seed(seed, epoch, stream))


def batch_generator(seed: int, epoch: int, batch: int, rank: int = 0) -> torch.Generator:
    """The CPU generator of one batch's regularisers on one process."""
    return torch.Generator().manual_seed(mixed_seed(seed, epoch, REGULARISE, batch, rank))


@contextlib.contextmanager
def image_rng(seed: int, epoch: int, index: int) -> Iterator[None]:
    """The global CPU torch generator seeded for image ``index`` of ``epoch`` and restored
    afterwards, so a per-image torchvision transform draws the same whichever process, worker
    or batch applies it. Only the CPU generator: the transforms draw from it alone, and
    ``torch.manual_seed`` would also seed the CUDA (and XPU, MTIA) generators, lazily, each
    call recording a Python stack: a tenth of an image's time in a loader worker."""
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(mixed_seed(seed, epoch, AUGMENT, index))
    try:
        yield
    finally:
        generator.set_state(state)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (init, dropout, Shake-Shake)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The python, numpy, torch (and CUDA) generator states, in types a weights-only load reads."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {"python": [py[0], list(py[1]), py[2]],
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                       int(np_state[2]), int(np_state[3]), float(np_state[4])],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), np_state[2],
                         np_state[3], np_state[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][:torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)
