"""cifar.py's loaders: the whole dataset on the training device with batched augmentation
(DeviceLoader, the default), or torchvision's per-image transforms in DataLoader workers."""
from typing import Optional

import torch
import torchvision.transforms as T

from .choice import DataChoice
from .datasets import DATASETS, ArrayDataset, dataset_stats
from .loaders import (ArrayImages, BatchFormat, CropFlip, DeviceLoader, EpochBatches, ImageView,
                      Loaders, StreamLoader, Workers)

__all__ = ["cifar_loaders"]


def cifar_loaders(train_set: ArrayDataset, test_set: ArrayDataset, data: DataChoice,
                  device: torch.device, seed: int, channels_last: bool,
                  shard: Optional[dict] = None) -> Loaders:
    """Training batches drawn per image from (seed, epoch); test batches in order. Crops of 32
    with 4 pixels of padding, mirror images where the dataset allows, then ``data.policy``
    (AutoAugment, RandAugment, TrivialAugment), batched on the device or torchvision's per
    image. ``data``: a DataChoice; ``shard``: this process's rank and world (all of it by
    default)."""
    mean, std = dataset_stats(data.dataset, train_set)
    flip = DATASETS[data.dataset]["flip"]
    shard = shard or {}
    train_batches = EpochBatches(len(train_set), data.train_batch, shuffle=True, seed=seed,
                                 **shard)
    test_batches = EpochBatches(len(test_set), data.test_batch, shuffle=False, **shard)
    fmt = BatchFormat(mean, std, channels_last)
    if data.loader == "device":
        augment = CropFlip(pad=4, flip=flip, policy=data.policy)
        return Loaders(DeviceLoader(train_set, train_batches, device, fmt, augment),
                       DeviceLoader(test_set, test_batches, device, fmt))
    policy = data.policy.torchvision_transform()
    train_transform = T.Compose([T.RandomCrop(32, padding=4)] +
                                ([T.RandomHorizontalFlip()] if flip else []) +
                                ([policy] if policy else []) + [T.PILToTensor()])
    return Loaders(StreamLoader(ArrayImages(train_set), ImageView(train_transform), train_batches,
                                device, fmt, Workers(data.workers)),
                   StreamLoader(ArrayImages(test_set), ImageView(T.PILToTensor(), random=False),
                                test_batches, device, fmt, Workers(data.workers)))
