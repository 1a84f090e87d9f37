"""Batches for training and evaluation.

Every random choice of an epoch (the order of images, each image's crop and flip) is drawn from
(seed, epoch, image index) alone, never from the batch layout (utils.seeding states the rule).

Two loaders yield the same thing, normalised float batches on the training device:
- ``DeviceLoader``: the whole dataset as one uint8 tensor on the device; crops and flips are
  applied to a whole batch at once by indexing, then an AutoAugment-family policy, if any, by
  the batched ops of policies.py (the fast CIFAR path).
- ``StreamLoader``: a torch DataLoader of per-image torchvision transforms (ImageNet, or CIFAR
  with --loader dataloader); uint8 batches are copied to the device and normalised there.

``build_loaders`` is the one skeleton of both scripts' loaders: the held-out split, each split's
batches, and a ``LoaderBuilder`` (one per --loader or --decode path) for the loader of each.
"""
import contextlib
import dataclasses
from typing import Any, Callable, Iterator, NamedTuple, Optional, Protocol, Union

import torch
import torch.nn.functional as F
from PIL import Image

from ..seeding import AUGMENT, ORDER, image_rng, stream_generator
from ..settings.values import AugmentPolicy, DataSettings
from .batch_pool import BatchPool, pool_slots
from .datasets import ArrayDataset
from .errors import DataError, worker_error
from .policies import PolicyDraws, apply_policy, epoch_draws
from .splits import hold_out
from .transfer import to_device
from .workers import Workers, data_loader, one_intra_op_thread, stop_workers

__all__ = ["Loaders", "EpochBatches", "EpochLoader", "BatchFormat", "CropFlip", "ImageView",
           "Normalize", "DeviceLoader", "StreamLoader", "TaggedBatches", "crop_flip",
           "ArrayImages", "LoaderBuilder", "build_loaders"]

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclasses.dataclass(frozen=True)
class BatchFormat:
    """The batches a model takes: float32, (x / 255 - mean) / std per channel, with channels-last
    strides where ``channels_last``."""
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels_last: bool = False


@dataclasses.dataclass(frozen=True)
class CropFlip:
    """DeviceLoader's training augmentation: a random crop of the image zero-padded by ``pad``,
    a horizontal flip where ``flip``, then ``policy`` (an AugmentPolicy, none by default)."""
    pad: int = 4
    flip: bool = True
    policy: AugmentPolicy = AugmentPolicy()


@dataclasses.dataclass(frozen=True)
class ImageView:
    """A per-image transform that returns a uint8 image, (C, H, W), or with ``hwc`` (H, W, C);
    ``random``: whether it draws (a training view) and so is seeded per image."""
    transform: Callable
    random: bool = True
    hwc: bool = False


class Loaders(NamedTuple):
    """A run's loaders: training batches (shuffled, augmented), the evaluation batches of every
    epoch, and, where those are a held-out split of the training images (--val-split), the test
    split's, scored once at the end (``final``; None otherwise); ``fmt``, the BatchFormat (the
    normalisation) every batch is made in."""
    train: "EpochLoader"
    test: "EpochLoader"
    final: Optional["EpochLoader"] = None
    fmt: Optional[BatchFormat] = None

    @property
    def test_split(self) -> "EpochLoader":
        """The loader of the test split: ``final`` where there is a held-out split."""
        return self.final if self.final is not None else self.test


class EpochBatches:
    """The image indices of each micro-batch of an epoch, for one process of ``world``.

    Micro-batch b of the epoch covers positions [b*B, (b+1)*B) of the epoch's permutation; with
    several processes each takes a contiguous share of every micro-batch (torch.tensor_split)."""

    def __init__(self, num_images: int, batch_size: int, shuffle: bool, seed: int = 0,
                 rank: int = 0, world: int = 1):
        self.num_images, self.batch_size, self.shuffle = num_images, batch_size, shuffle
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch = self.first = 0

    def set_epoch(self, epoch: int, first_batch: int = 0) -> None:
        """Iterate ``epoch``'s micro-batches from ``first_batch`` on (a run resumed mid-epoch:
        the draws do not depend on where iteration starts)."""
        self.epoch, self.first = epoch, first_batch

    def permutation(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_images)
        return torch.randperm(self.num_images,
                             generator=stream_generator(self.seed, self.epoch, ORDER))

    def batch_sizes(self) -> list[int]:
        """Global size of every micro-batch of the epoch (all processes together). In training
        with several processes a last batch smaller than the process count is dropped, since
        every process must take part in every step."""
        n, b = self.num_images, self.batch_size
        sizes = [min(b, n - start) for start in range(0, n, b)]
        if self.shuffle and self.world > 1 and sizes and sizes[-1] < self.world:
            sizes.pop()
        return sizes

    def __len__(self) -> int:
        return len(self.batch_sizes())

    def __iter__(self) -> Iterator[torch.Tensor]:
        perm = self.permutation()
        for b in range(self.first, len(self.batch_sizes())):
            chunk = perm[b * self.batch_size:(b + 1) * self.batch_size]
            yield torch.tensor_split(chunk, self.world)[self.rank] if self.world > 1 else chunk


def crop_flip(images: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, flip: torch.Tensor,
              pad: int) -> torch.Tensor:
    """Random-crop-with-padding and horizontal flip of a uint8 batch (B, C, H, W) in one gather:
    image i is zero-padded by ``pad``, cropped at (dy[i], dx[i]) and mirrored where flip[i].
    Returns (B, C, H, W) with channels-last strides."""
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(h, device=images.device)
    cols = dx[:, None] + torch.arange(w, device=images.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=images.device)[:, None, None]
    # Advanced indices around a slice put their dims first: the result is (B, H, W, C).
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


class Normalize:
    """uint8 -> float32 batches of ``fmt`` (a BatchFormat), on the device. Batches come as
    (B, C, H, W), or with ``hwc`` as (B, H, W, C), which is the channels-last layout already: no
    copy for a channels-last model, one for an NCHW one."""

    def __init__(self, fmt: BatchFormat, device: Union[str, torch.device], hwc: bool = False):
        std = torch.tensor(fmt.std, device=device)
        self.scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
        self.shift = (-torch.tensor(fmt.mean, device=device) / std).view(1, -1, 1, 1)
        self.memory_format = torch.channels_last if fmt.channels_last else torch.contiguous_format
        self.hwc = hwc

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.hwc:
            x = x.permute(0, 3, 1, 2)
        # One pass from uint8 to the float batch, in the model's layout (no uint8 copy first).
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device,
                          memory_format=self.memory_format)
        return torch.addcmul(self.shift, x, self.scale, out=out)


class EpochLoader:
    """What the engine asks of a loader besides iteration: the epoch and the batch plan."""
    batches: EpochBatches

    def set_epoch(self, epoch: int, first_batch: int = 0) -> None:
        self.batches.set_epoch(epoch, first_batch)

    def batch_sizes(self) -> list[int]:
        return self.batches.batch_sizes()

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Batch]:
        raise NotImplementedError


class DeviceLoader(EpochLoader):
    """An ArrayDataset held on ``device``; batches are gathered, augmented (``augment``, a
    CropFlip; none for evaluation) and normalised to ``fmt`` there."""

    def __init__(self, dataset: ArrayDataset, batches: EpochBatches,
                 device: Union[str, torch.device], fmt: BatchFormat,
                 augment: Optional[CropFlip] = None):
        self.images = dataset.images.to(device)
        self.labels = dataset.labels.to(device)
        self.batches, self.device, self.augment = batches, device, augment
        self.normalize = Normalize(fmt, device)

    @property
    def policy(self) -> AugmentPolicy:
        """The AugmentPolicy applied after crop and flip (a disabled one without ``augment``)."""
        return self.augment.policy if self.augment is not None else AugmentPolicy()

    def draws(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Crop offsets and flips of every image for this epoch, indexed by image (the flips
        are drawn even when unused, so the crops do not depend on ``flip``)."""
        n, span = len(self.labels), 2 * self.augment.pad + 1
        g = stream_generator(self.batches.seed, self.batches.epoch, AUGMENT)
        offsets = torch.randint(0, span, (2, n), generator=g)
        flips = (torch.rand(n, generator=g) < 0.5) & self.augment.flip
        dx, dy = to_device(offsets, self.device)
        return dx, dy, to_device(flips, self.device)

    def policy_draws(self) -> PolicyDraws:
        """This epoch's policy ops and magnitudes of every image, indexed by image."""
        return epoch_draws(self.policy, len(self.labels), self.batches.seed,
                           self.batches.epoch, self.images.shape[2:]).to(self.device)

    def __iter__(self) -> Iterator[Batch]:
        augment = self.augment
        policy = self.policy.enabled
        if augment is not None:
            dx, dy, flip = self.draws()
        if policy:
            policy_draws = self.policy_draws()
        for idx in self.batches:
            idx = to_device(idx, self.device)
            x = self.images[idx]
            if augment is not None:
                x = crop_flip(x, dx[idx], dy[idx], flip[idx], augment.pad)
            if policy:
                x = apply_policy(x, policy_draws.rows(idx))
            yield self.normalize(x), self.labels[idx]


class ArrayImages(torch.utils.data.Dataset):
    """An ArrayDataset seen as (PIL image, label) items, for per-image torchvision transforms."""

    def __init__(self, dataset: ArrayDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        image = self.dataset.images[i].permute(1, 2, 0).numpy()
        return Image.fromarray(image.squeeze(2) if image.shape[2] == 1 else image), \
            int(self.dataset.labels[i])


class SeededTransform(torch.utils.data.Dataset):
    """Applies ``view``'s transform to item i with the torch RNG seeded from (seed, epoch, i),
    or, for a view that draws nothing (an evaluation view), unseeded; items are addressed as
    (epoch, i) so persistent workers need no epoch broadcast."""

    def __init__(self, dataset: torch.utils.data.Dataset, view: ImageView, seed: int):
        self.dataset, self.transform, self.random, self.seed = dataset, view.transform, \
            view.random, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, i = key
        image, label = self.dataset[i]
        if not self.random:
            return self.transform(image), label
        with image_rng(self.seed, epoch, i):
            return self.transform(image), label


class TaggedBatches:
    """A batch sampler over EpochBatches whose items are (epoch, image index): a dataset in a
    persistent worker learns the epoch from its item, with no broadcast."""

    def __init__(self, batches: EpochBatches):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.batches.epoch
        for idx in self.batches:
            yield [(epoch, int(i)) for i in idx]


class StreamLoader(EpochLoader):
    """A DataLoader of ``view`` (an ImageView) over ``dataset`` in ``workers``; batches are moved
    to ``device`` (pinned, non-blocking) and normalised to ``fmt`` there.

    An error inside a worker (a file that cannot be read) ends the iteration with the worker's
    own DataError line, the workers shut down, instead of torch's report of a wrapped
    traceback."""

    def __init__(self, dataset: torch.utils.data.Dataset, view: ImageView, batches: EpochBatches,
                 device: Union[str, torch.device], fmt: BatchFormat, workers: Workers = Workers()):
        self.batches, self.device = batches, device
        self.pool = BatchPool(workers.count, pool_slots(workers.prefetch))
        kind = torch.device(device).type
        # Normalising on the CPU while workers decode there: the workers already fill the cores,
        # and a second intra-op thread only contends with them (issue 34 item 3: one thread
        # halved the main process's CPU per image and raised the rate 16% on 2 cores).
        self.normalise_threads = (one_intra_op_thread if kind == "cpu" and workers.count > 0
                                  else contextlib.nullcontext)
        self.loader = data_loader(
            SeededTransform(dataset, view, batches.seed), workers, collate_fn=self.pool,
            batch_sampler=TaggedBatches(batches), pin_memory=kind == "cuda")
        self.normalize = Normalize(fmt, device, view.hwc)

    def __iter__(self) -> Iterator[Batch]:
        if getattr(self.loader, "_iterator", None) is None:  # no worker runs yet
            self.pool.reset()
        batches = iter(self.loader)
        try:
            for images, y, ticket in batches:
                with self.normalise_threads():
                    x = self.normalize(images.to(self.device, non_blocking=True))
                self.pool.release(ticket, images)  # normalised into a new tensor: read
                yield x, y.to(self.device, non_blocking=True)
        except Exception as e:
            stop_workers(self.loader, batches)
            raise worker_error(e) from None


class LoaderBuilder(Protocol):
    """One way of loading (a --loader or --decode path): the loader of the training images and
    of a split evaluated in order, each over the batches ``build_loaders`` plans, in ``fmt``."""
    fmt: BatchFormat

    def train(self, dataset: Any, batches: EpochBatches) -> EpochLoader: ...

    def evaluation(self, dataset: Any, batches: EpochBatches) -> EpochLoader: ...


def build_loaders(train_set: Any, test_set: Any, data: DataSettings,
                  builder_for: Callable[[Any], LoaderBuilder], seed: int,
                  shard: Optional[dict] = None) -> Loaders:
    """A run's Loaders: ``data.val_split``'s held-out share of ``train_set`` evaluated every
    epoch and ``test_set`` scored at the end (utils.data.splits.hold_out), or ``test_set`` every
    epoch; training batches of ``data.train_batch`` drawn from ``seed``, evaluation batches of
    ``data.test_batch`` in order; each loader made by ``builder_for(training images)`` (which may
    read them: cifar.py's normalisation is their statistics). ``shard``: this process's rank
    and world (all of it by default)."""
    train_set, test_set, final_set = hold_out(train_set, test_set, data.val_split)
    shard = shard or {}
    builder = builder_for(train_set)

    def evaluation(dataset):
        return builder.evaluation(dataset, EpochBatches(len(dataset), data.test_batch,
                                                        shuffle=False, **shard))

    train = builder.train(train_set, EpochBatches(len(train_set), data.train_batch, shuffle=True,
                                                  seed=seed, **shard))
    return Loaders(train, evaluation(test_set),
                   evaluation(final_set) if final_set is not None else None, builder.fmt)
