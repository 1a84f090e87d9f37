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

The sizes (224 / 256 / 224 above), the resampling filter and the normalisation are the run's
ImageViews (--train-crop-size, --val-resize-size, --val-crop-size, --interpolation, --mean,
--std). Every path takes the same crop box and mirror of an image: the draws come from (seed,
epoch, image) by the same torchvision calls. The training loader keeps its workers between epochs; each
worker holds at most two batches ahead (``loader_memory`` says how much that is).
"""
from typing import Optional

import torch
import torchvision.transforms as T

from ..settings.values import DataSettings
from .batch_pool import pool_slots
from .datasets import find_image_folder
from .image_files import FileItems, ImageFiles, val_files
from .decode import decode_file, read_bytes, require_torchcodec
from .device_decode import DeviceDecodeLoader, DeviceView
from .loaders import BatchFormat, EpochBatches, ImageView, Loaders, StreamLoader
from .policies import torchvision_transform
from .splits import held_out_split
from .views import TrainView, ValView
from .workers import Workers

__all__ = ["DECODE_PATHS", "decoded_item", "imagenet_loaders", "loader_memory", "PREFETCH"]

DECODE_PATHS = ("cpu", "pil", "device")
PREFETCH = 2  # batches each worker prepares ahead


def decoded_item(path: str, label: int, i: int) -> tuple[torch.Tensor, int]:
    """A FileItems item: (the file decoded to an RGB (3, H, W) uint8 tensor, label)."""
    return decode_file(read_bytes(path), path), label


def loader_memory(data: DataSettings) -> int:
    """Bytes of decoded batches the loaders can hold at once: each worker's shared blocks of
    uint8 RGB crops (utils.data.batch_pool: its prefetched batches and two more), for the
    training loader and the evaluation one (whose workers live while it evaluates)."""
    views = data.views
    return max(data.workers, 1) * pool_slots(PREFETCH) * 3 * (
        views.train_crop ** 2 * data.train_batch + views.val_crop ** 2 * data.test_batch)


def imagenet_loaders(data: DataSettings, device: torch.device, seed: int, channels_last: bool,
                     classes: Optional[list[str]] = None,
                     shard: Optional[dict] = None) -> tuple[list[str], Loaders]:
    """(classes, Loaders) of ``data`` (a DataSettings) on ``device``, labelled by ``classes``
    (train/'s folders, read when not given); ``shard``: this process's rank and world. With
    ``data.val_split`` the held-out training images (utils.data.splits) are evaluated every
    epoch, and val/ is the final loader."""
    if data.decode != "pil":
        require_torchcodec(f"--decode {data.decode}")
    train_set = ImageFiles(find_image_folder(data.root, "train"), classes)
    find_image_folder(data.root, "val")
    val_set = val_files(data.root, train_set.classes)
    final_set = None
    if data.val_split:
        split = held_out_split(train_set.labels, data.val_split)
        train_set, val_set, final_set = (train_set.subset(split.train.tolist()),
                                         train_set.subset(split.held_out.tolist()), val_set)
    shard = shard or {}
    train_batches = EpochBatches(len(train_set), data.train_batch, shuffle=True, seed=seed,
                                 **shard)
    views = data.views
    fmt = BatchFormat(views.mean, views.std, channels_last)
    mode = T.InterpolationMode(views.interpolation)
    train_workers = Workers(data.workers, PREFETCH, persistent=True)
    policy = torchvision_transform(data.policy)

    def evaluation(files):
        batches = EpochBatches(len(files), data.test_batch, shuffle=False, **shard)
        workers = Workers(data.workers, PREFETCH, persistent=False)
        if data.decode == "device":
            return DeviceDecodeLoader(files, batches, device, fmt, DeviceView(False, views),
                                      workers)
        if data.decode == "pil":
            view = T.Compose([T.Resize(views.val_resize, mode), T.CenterCrop(views.val_crop),
                              T.PILToTensor()])
            return StreamLoader(files, ImageView(view, random=False), batches, device, fmt,
                                workers)
        view = ValView(views.val_crop, views.val_resize, views.interpolation)
        return StreamLoader(FileItems(files, decoded_item),
                            ImageView(view, random=False, hwc=True), batches, device, fmt,
                            workers)

    final = evaluation(final_set) if final_set is not None else None
    if data.decode == "device":
        train = DeviceDecodeLoader(train_set, train_batches, device, fmt,
                                   DeviceView(True, views, data.policy), train_workers)
    elif data.decode == "pil":
        view = T.Compose([T.RandomResizedCrop(views.train_crop, interpolation=mode),
                          T.RandomHorizontalFlip()] + ([policy] if policy else []) +
                         [T.PILToTensor()])
        train = StreamLoader(train_set, ImageView(view, random=True), train_batches, device,
                             fmt, train_workers)
    else:
        train = StreamLoader(FileItems(train_set, decoded_item),
                             ImageView(TrainView(views.train_crop, policy, views.interpolation),
                                       random=True, hwc=True),
                             train_batches, device, fmt, train_workers)
    return train_set.classes, Loaders(train, evaluation(val_set), final, fmt)
