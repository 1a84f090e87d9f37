"""cifar.py's loaders: the whole dataset on the training device with batched augmentation
(DeviceLoader, the default), or torchvision's per-image transforms in DataLoader workers."""
from typing import Optional

import torch
import torchvision.transforms as T

from ..settings.values import DataSettings
from .datasets import DATASETS, ArrayDataset, dataset_stats
from .loaders import (ArrayImages, BatchFormat, CropFlip, DeviceLoader, EpochBatches, ImageView,
                      Loaders, StreamLoader)
from .policies import torchvision_transform
from .splits import held_out_split
from .workers import Workers

# cifar.py's --loader: the dataset on the training device with batched augmentation, or a
# DataLoader of per-image torchvision transforms. Their draws differ, so a run keeps its own.
LOADERS = ("device", "dataloader")

__all__ = ["LOADERS", "cifar_loaders"]


def cifar_loaders(train_set: ArrayDataset, test_set: ArrayDataset, data: DataSettings,
                  device: torch.device, seed: int, channels_last: bool,
                  shard: Optional[dict] = None) -> Loaders:
    """Training batches drawn per image from (seed, epoch); evaluation batches in order. Crops
    of 32 with 4 pixels of padding, mirror images where the dataset allows, then ``data.policy``
    (AutoAugment, RandAugment, TrivialAugment), batched on the device or torchvision's per
    image. With ``data.val_split`` the held-out training images (utils.data.splits) are
    evaluated every epoch and ``test_set`` is the final loader. ``data``: a DataSettings;
    ``shard``: this process's rank and world (all of it by default)."""
    final_set = None
    if data.val_split:
        split = held_out_split(train_set.labels, data.val_split)
        train_set, test_set, final_set = (train_set.subset(split.train),
                                          train_set.subset(split.held_out), test_set)
    mean, std = dataset_stats(data.dataset, train_set)
    flip = DATASETS[data.dataset]["flip"]
    shard = shard or {}
    train_batches = EpochBatches(len(train_set), data.train_batch, shuffle=True, seed=seed,
                                 **shard)
    fmt = BatchFormat(mean, std, channels_last)

    def evaluation(dataset):
        batches = EpochBatches(len(dataset), data.test_batch, shuffle=False, **shard)
        if data.loader == "device":
            return DeviceLoader(dataset, batches, device, fmt)
        return StreamLoader(ArrayImages(dataset), ImageView(T.PILToTensor(), random=False),
                            batches, device, fmt, Workers(data.workers))

    final = evaluation(final_set) if final_set is not None else None
    if data.loader == "device":
        augment = CropFlip(pad=4, flip=flip, policy=data.policy)
        return Loaders(DeviceLoader(train_set, train_batches, device, fmt, augment),
                       evaluation(test_set), final, fmt)
    policy = torchvision_transform(data.policy)
    train_transform = T.Compose([T.RandomCrop(32, padding=4)] +
                                ([T.RandomHorizontalFlip()] if flip else []) +
                                ([policy] if policy else []) + [T.PILToTensor()])
    return Loaders(StreamLoader(ArrayImages(train_set), ImageView(train_transform), train_batches,
                                device, fmt, Workers(data.workers)), evaluation(test_set), final,
                   fmt)
