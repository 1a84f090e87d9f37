"""ImageNet batches decoded on the training device (imagenet.py --decode device).

On a fast GPU a few CPU cores cannot decode JPEGs as fast as l_resnet50 consumes them. Here the
workers only read the files' bytes; the main process decodes a whole batch of JPEGs in one
torchcodec call on the device (nvJPEG on CUDA; other formats on the CPU and moved:
utils.data.decode), then crops and resizes each image there in float32:

    train: RandomResizedCrop(224, scale=(0.08, 1), ratio=(3/4, 4/3)) + horizontal flip
           [+ an AutoAugment-family policy, batched on uint8 crops as on cifar.py's device path]
    val:   the centre box of Resize(256) + CenterCrop(224), resized once (utils.data.views)

Each image's crop and flip are drawn from (seed, epoch, image index) alone, by the same
torchvision calls as on the other paths, so every path takes the same boxes and mirrors; pixels
differ slightly (another resampler).
"""
from typing import Iterator, NamedTuple, Union

import torch
import torchvision.transforms.v2.functional as TF

from ..seeding import image_rng
from ..settings.values import AugmentPolicy, ImageViews
from .image_files import FileItems, ImageFiles
from .decode import decode_batch, read_bytes
from .errors import worker_error
from .loaders import Batch, BatchFormat, EpochBatches, EpochLoader, Normalize, TaggedBatches
from .policies import apply_policy, epoch_draws
from .transfer import to_device
from .views import centre_box, crop_and_flip
from .workers import Workers, data_loader, stop_workers

__all__ = ["encoded_item", "DeviceView", "DeviceDecodeLoader"]


def encoded_item(path: str, label: int, i: int) -> tuple[torch.Tensor, int, int]:
    """A FileItems item: (the file's bytes as a uint8 tensor, label, i)."""
    return read_bytes(path), label, i


def _collate(items):
    datas, labels, indices = zip(*items)
    return list(datas), torch.tensor(labels), list(indices)


class DeviceView(NamedTuple):
    """What a DeviceDecodeLoader cuts of each image: the training views (``train``: the
    RandomResizedCrop and flip of ``views``, then ``policy``) or the evaluation view (the centre
    crop of ``views``)."""
    train: bool
    views: ImageViews = ImageViews()
    policy: AugmentPolicy = AugmentPolicy()


class DeviceDecodeLoader(EpochLoader):
    """Batches of an ImageFiles tree, decoded, cropped as ``view`` says and normalised to
    ``fmt`` on ``device``; ``workers`` read the files (imagenet_loaders keeps them between
    epochs for training only)."""

    def __init__(self, files: ImageFiles, batches: EpochBatches,
                 device: Union[str, torch.device], fmt: BatchFormat, view: DeviceView,
                 workers: Workers = Workers()):
        self.batches, self.device, self.train = batches, torch.device(device), view.train
        self.policy, self.views = view.policy, view.views
        self.paths = [path for path, _ in files.samples]
        self.loader = data_loader(FileItems(files, encoded_item), workers, collate_fn=_collate,
                                  batch_sampler=TaggedBatches(batches))
        self.normalize = Normalize(fmt, device)

    def view(self, image: torch.Tensor, index: int) -> torch.Tensor:
        """The float32 (C, S, S) view of decoded ``image``, item ``index`` of the tree (S: the
        views' training or evaluation crop). The box is cut from the uint8 image and only its
        pixels become float: a 200-megapixel photograph is not converted whole."""
        views = self.views
        mode = TF.InterpolationMode(views.interpolation)
        if not self.train:
            size = views.val_crop
            top, left, h, w = centre_box(image.shape[-2], image.shape[-1], views.val_resize, size)
            return TF.resize(TF.crop(image, top, left, h, w).float(), [size, size],
                             interpolation=mode, antialias=True)
        # The draws of the other paths' RandomResizedCrop + RandomHorizontalFlip, in their order
        # and from the same seeded generator: every path crops and mirrors an image alike.
        with image_rng(self.batches.seed, self.batches.epoch, index):
            top, left, h, w, flip = crop_and_flip(image)
        size = views.train_crop
        image = TF.resize(TF.crop(image, top, left, h, w).float(), [size, size],
                          interpolation=mode, antialias=True)
        return image.flip(-1) if flip else image

    def __iter__(self) -> Iterator[Batch]:
        policy = self.train and self.policy.enabled
        if policy:
            # Every image's ops for the epoch, indexed by image, as on cifar.py's DeviceLoader.
            side = self.views.train_crop
            policy_draws = epoch_draws(self.policy, len(self.paths), self.batches.seed,
                                       self.batches.epoch, (side, side))
        batches = iter(self.loader)
        try:
            for datas, y, indices in batches:
                images = decode_batch(datas, [self.paths[i] for i in indices], self.device)
                x = torch.stack([self.view(im, i) for im, i in zip(images, indices)])
                if policy:
                    # The policy's ops are defined on 8-bit pixels, as the other paths have them.
                    x = x.round().clamp(0, 255).to(torch.uint8)
                    x = apply_policy(x, policy_draws.rows(torch.tensor(indices)).to(self.device))
                yield self.normalize(x), to_device(y, self.device)
        except Exception as e:
            stop_workers(self.loader, batches)
            raise worker_error(e) from None
