"""cifar.py's loaders: the whole dataset on the training device with batched augmentation
(``OnDevice``, the default), or torchvision's per-image transforms in DataLoader workers
(``PerImage``); utils.data.loaders.build_loaders plans the splits and batches of both."""
from typing import Optional

import torch
import torchvision.transforms as T

from ..settings.values import DataSettings
from .datasets import DATASETS, ArrayDataset, dataset_stats
from .loaders import (ArrayImages, BatchFormat, CropFlip, DeviceLoader, EpochBatches, EpochLoader,
                      ImageView, Loaders, StreamLoader, build_loaders)
from .policies import torchvision_transform
from .workers import Workers

# cifar.py's --loader: the dataset on the training device with batched augmentation, or a
# DataLoader of per-image torchvision transforms. Their draws differ, so a run keeps its own.
LOADERS = ("device", "dataloader")

__all__ = ["LOADERS", "cifar_loaders", "OnDevice", "PerImage"]


class OnDevice:
    """--loader device: every split as one uint8 tensor on ``device``; the training batches
    take ``augment`` (crop, flip, policy) on the device."""

    def __init__(self, device: torch.device, fmt: BatchFormat, augment: CropFlip):
        self.device, self.fmt, self.augment = device, fmt, augment

    def train(self, dataset: ArrayDataset, batches: EpochBatches) -> EpochLoader:
        return DeviceLoader(dataset, batches, self.device, self.fmt, self.augment)

    def evaluation(self, dataset: ArrayDataset, batches: EpochBatches) -> EpochLoader:
        return DeviceLoader(dataset, batches, self.device, self.fmt)


class PerImage:
    """--loader dataloader: torchvision's per-image ``transform`` of the training images in
    ``workers`` processes, the evaluated images as they are."""

    def __init__(self, device: torch.device, fmt: BatchFormat, transform: T.Compose,
                 workers: int):
        self.device, self.fmt, self.transform, self.workers = device, fmt, transform, workers

    def train(self, dataset: ArrayDataset, batches: EpochBatches) -> EpochLoader:
        return StreamLoader(ArrayImages(dataset), ImageView(self.transform), batches,
                            self.device, self.fmt, Workers(self.workers))

    def evaluation(self, dataset: ArrayDataset, batches: EpochBatches) -> EpochLoader:
        return StreamLoader(ArrayImages(dataset), ImageView(T.PILToTensor(), random=False),
                            batches, self.device, self.fmt, Workers(self.workers))


def cifar_loaders(train_set: ArrayDataset, test_set: ArrayDataset, data: DataSettings,
                  device: torch.device, seed: int, channels_last: bool,
                  shard: Optional[dict] = None) -> Loaders:
    """Training batches drawn per image from (seed, epoch); evaluation batches in order. Crops
    of 32 with 4 pixels of padding, mirror images where the dataset allows, then ``data.policy``
    (AutoAugment, RandAugment, TrivialAugment), batched on the device or torchvision's per
    image; normalised by the training images' statistics. With ``data.val_split`` the held-out
    training images (utils.data.splits) are evaluated every epoch and ``test_set`` is the final
    loader. ``shard``: this process's rank and world (all of it by default)."""
    flip = DATASETS[data.dataset]["flip"]

    def builder_for(training: ArrayDataset):
        fmt = BatchFormat(*dataset_stats(data.dataset, training), channels_last)
        if data.loader == "device":
            return OnDevice(device, fmt, CropFlip(pad=4, flip=flip, policy=data.policy))
        policy = torchvision_transform(data.policy)
        return PerImage(device, fmt, T.Compose([T.RandomCrop(32, padding=4)] +
                                               ([T.RandomHorizontalFlip()] if flip else []) +
                                               ([policy] if policy else []) + [T.PILToTensor()]),
                        data.workers)

    return build_loaders(train_set, test_set, data, builder_for, seed, shard)
