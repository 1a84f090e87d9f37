"""imagenet.py's loaders: an ImageFolder tree with train/ and val/, through one of three paths.

    --decode cpu     (default) workers decode each file to a uint8 tensor (utils.data.decode:
                     torchcodec) and crop, resize and flip it on uint8 tensors
                     (utils.data.views); batches collate as NHWC uint8 and are normalised on the
                     training device
    --decode pil     the reference's pipeline, pixel for pixel: PIL decoding, torchvision's
                     RandomResizedCrop(224) + RandomHorizontalFlip, Resize(256) + CenterCrop(224)
                     on PIL images in the workers
    --decode device  workers read bytes; decoding (nvJPEG on CUDA), crops and resizes happen on
                     the training device (utils.data.device_decode)

Every path takes the same crop box and mirror of an image: the draws come from (seed, epoch,
image) by the same torchvision calls. The training loader keeps its workers between epochs; each
worker holds at most two batches ahead (``loader_memory`` says how much that is).
"""
from typing import Optional

import torch
import torchvision.transforms as T

from .choice import DataChoice
from .datasets import IMAGENET_MEAN, IMAGENET_STD, ImageFiles, find_image_folder
from .decode import decode_file, read_bytes, require_torchcodec
from .device_decode import DeviceDecodeLoader
from .loaders import BatchFormat, EpochBatches, ImageView, Loaders, StreamLoader, Workers
from .views import RESIZE, SIZE, TrainView, ValView

__all__ = ["DECODE_PATHS", "DecodedFiles", "imagenet_loaders", "loader_memory", "PREFETCH"]

DECODE_PATHS = ("cpu", "pil", "device")
PREFETCH = 2  # batches each worker prepares ahead


class DecodedFiles(torch.utils.data.Dataset):
    """Item i of an ImageFiles tree as (RGB (3, H, W) uint8 tensor, label)."""

    def __init__(self, files: ImageFiles):
        self.samples = files.samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        return decode_file(read_bytes(path), path), label


def loader_memory(workers: int, train_batch: int, test_batch: int) -> int:
    """Bytes of decoded batches the loaders can hold at once: each worker's prefetched batches
    of uint8 224x224 RGB images, for the training loader and the evaluation one (whose workers
    live while it evaluates)."""
    per_image = 3 * SIZE * SIZE
    return max(workers, 1) * PREFETCH * per_image * (train_batch + test_batch)


def imagenet_loaders(data: DataChoice, device: torch.device, seed: int, channels_last: bool,
                     classes: Optional[list[str]] = None,
                     shard: Optional[dict] = None) -> tuple[list[str], Loaders]:
    """(classes, Loaders) of ``data`` (a DataChoice) on ``device``, labelled by ``classes``
    (train/'s folders, read when not given); ``shard``: this process's rank and world."""
    if data.decode != "pil":
        require_torchcodec(f"--decode {data.decode}")
    train_set = ImageFiles(find_image_folder(data.root, "train"), classes)
    val_set = ImageFiles(find_image_folder(data.root, "val"), train_set.classes)
    shard = shard or {}
    train_batches = EpochBatches(len(train_set), data.train_batch, shuffle=True, seed=seed,
                                 **shard)
    val_batches = EpochBatches(len(val_set), data.test_batch, shuffle=False, **shard)
    fmt = BatchFormat(IMAGENET_MEAN, IMAGENET_STD, channels_last)
    train_workers = Workers(data.workers, PREFETCH, persistent=True)
    val_workers = Workers(data.workers, PREFETCH, persistent=False)
    if data.decode == "device":
        return train_set.classes, Loaders(
            DeviceDecodeLoader(train_set, train_batches, device, fmt, train=True,
                               workers=train_workers, policy=data.policy),
            DeviceDecodeLoader(val_set, val_batches, device, fmt, train=False,
                               workers=val_workers))
    policy = data.policy.torchvision_transform()
    if data.decode == "pil":
        train_view = T.Compose([T.RandomResizedCrop(SIZE), T.RandomHorizontalFlip()] +
                               ([policy] if policy else []) + [T.PILToTensor()])
        val_view = T.Compose([T.Resize(RESIZE), T.CenterCrop(SIZE), T.PILToTensor()])
        train_images, val_images, hwc = train_set, val_set, False
    else:
        train_view, val_view = TrainView(SIZE, policy), ValView(SIZE)
        train_images, val_images, hwc = DecodedFiles(train_set), DecodedFiles(val_set), True
    return train_set.classes, Loaders(
        StreamLoader(train_images, ImageView(train_view, random=True, hwc=hwc), train_batches,
                     device, fmt, train_workers),
        StreamLoader(val_images, ImageView(val_view, random=False, hwc=hwc), val_batches,
                     device, fmt, val_workers))
