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
from .image_files import find_image_folder
from .image_files import FileItems, ImageFiles, val_files
from .decode import decode_file, read_bytes, require_torchcodec
from .device_decode import DeviceDecodeLoader, DeviceView
from .loaders import (BatchFormat, EpochBatches, EpochLoader, ImageView, Loaders, StreamLoader,
                      build_loaders)
from .policies import torchvision_transform
from .views import TrainView, ValView
from .workers import Workers

__all__ = ["DECODE_PATHS", "DECODE_BUILDERS", "decoded_item", "imagenet_loaders",
           "loader_memory", "PREFETCH", "TensorDecode", "PilDecode", "BatchDecode"]

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


class _FolderPath:
    """What every --decode path shares: the device, the batches' format, the run's views and
    policy, and the worker processes (the training loader keeps its own between epochs; each
    evaluation starts its own)."""

    def __init__(self, data: DataSettings, device: torch.device, fmt: BatchFormat):
        self.device, self.fmt, self.views, self.policy = device, fmt, data.views, data.policy
        self.workers = data.workers

    def train_workers(self) -> Workers:
        return Workers(self.workers, PREFETCH, persistent=True)

    def evaluation_workers(self) -> Workers:
        return Workers(self.workers, PREFETCH, persistent=False)


class TensorDecode(_FolderPath):
    """--decode cpu: the workers decode each file to a uint8 tensor and crop, resize and flip it
    as uint8 (utils.data.views)."""

    def train(self, files: ImageFiles, batches: EpochBatches) -> EpochLoader:
        view = TrainView(self.views.train_crop, torchvision_transform(self.policy),
                         self.views.interpolation)
        return StreamLoader(FileItems(files, decoded_item), ImageView(view, random=True, hwc=True),
                            batches, self.device, self.fmt, self.train_workers())

    def evaluation(self, files: ImageFiles, batches: EpochBatches) -> EpochLoader:
        view = ValView(self.views.val_crop, self.views.val_resize, self.views.interpolation)
        return StreamLoader(FileItems(files, decoded_item), ImageView(view, random=False, hwc=True),
                            batches, self.device, self.fmt, self.evaluation_workers())


class PilDecode(_FolderPath):
    """--decode pil: the reference's pipeline, torchvision's transforms on PIL images."""

    def train(self, files: ImageFiles, batches: EpochBatches) -> EpochLoader:
        policy = torchvision_transform(self.policy)
        mode = T.InterpolationMode(self.views.interpolation)
        view = T.Compose([T.RandomResizedCrop(self.views.train_crop, interpolation=mode),
                          T.RandomHorizontalFlip()] + ([policy] if policy else []) +
                         [T.PILToTensor()])
        return StreamLoader(files, ImageView(view, random=True), batches, self.device, self.fmt,
                            self.train_workers())

    def evaluation(self, files: ImageFiles, batches: EpochBatches) -> EpochLoader:
        mode = T.InterpolationMode(self.views.interpolation)
        view = T.Compose([T.Resize(self.views.val_resize, mode),
                          T.CenterCrop(self.views.val_crop), T.PILToTensor()])
        return StreamLoader(files, ImageView(view, random=False), batches, self.device, self.fmt,
                            self.evaluation_workers())


class BatchDecode(_FolderPath):
    """--decode device: the workers read bytes; the training device decodes, crops and resizes
    whole batches (utils.data.device_decode)."""

    def train(self, files: ImageFiles, batches: EpochBatches) -> EpochLoader:
        return DeviceDecodeLoader(files, batches, self.device, self.fmt,
                                  DeviceView(True, self.views, self.policy), self.train_workers())

    def evaluation(self, files: ImageFiles, batches: EpochBatches) -> EpochLoader:
        return DeviceDecodeLoader(files, batches, self.device, self.fmt,
                                  DeviceView(False, self.views), self.evaluation_workers())


# imagenet.py's --decode paths (the first is the default), each with its LoaderBuilder.
DECODE_BUILDERS = {"cpu": TensorDecode, "pil": PilDecode, "device": BatchDecode}
DECODE_PATHS = tuple(DECODE_BUILDERS)


def imagenet_loaders(data: DataSettings, device: torch.device, seed: int, channels_last: bool,
                     classes: Optional[list[str]] = None,
                     shard: Optional[dict] = None) -> tuple[list[str], Loaders]:
    """(classes, Loaders) of ``data`` (a DataSettings) on ``device``, labelled by ``classes``
    (train/'s folders, read when not given), through the ``data.decode`` path; ``shard``: this
    process's rank and world. With ``data.val_split`` the held-out training images
    (utils.data.splits) are evaluated every epoch, and val/ is the final loader."""
    if data.decode != "pil":
        require_torchcodec(f"--decode {data.decode}")
    train_set = ImageFiles(find_image_folder(data.root, "train"), classes)
    find_image_folder(data.root, "val")
    val_set = val_files(data.root, train_set.classes)
    fmt = BatchFormat(data.views.mean, data.views.std, channels_last)
    builder = DECODE_BUILDERS[data.decode](data, device, fmt)
    return train_set.classes, build_loaders(train_set, val_set, data, lambda _: builder, seed,
                                            shard)
