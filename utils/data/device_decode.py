"""ImageNet batches decoded on the training device (imagenet.py --decode device).

The default ImageNet path decodes and augments JPEGs with PIL in DataLoader workers; on a fast GPU
a few CPU cores cannot keep up with l_resnet50. Here the workers only read the files' bytes; the
main process decodes a whole batch of JPEGs at once with ``torchvision.io.decode_jpeg`` on the
device (nvJPEG on CUDA; other formats are decoded on the CPU and moved), then crops and resizes
each image there in float32:

    train: RandomResizedCrop(224, scale=(0.08, 1), ratio=(3/4, 4/3)) + horizontal flip
           [+ an AutoAugment-family policy, batched on uint8 crops as on cifar.py's device path]
    val:   Resize(256) (shorter side) + CenterCrop(224)

Each image's crop and flip are drawn from (seed, epoch, image index) alone, by the same
torchvision calls as on the PIL path, so both paths take the same boxes and mirrors; pixels differ
slightly (another JPEG decoder and resampler).
"""
import torch
import torchvision.transforms as T
import torchvision.transforms.v2.functional as TF
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from ..seeding import image_rng
from .datasets import DataError
from .loaders import EpochLoader, Normalize, TaggedBatches, ignore_stop_signals, own_generator
from .policies import AugmentPolicy, apply_policy
from .transfer import to_device

__all__ = ["EncodedImages", "DeviceDecodeLoader"]


class EncodedImages(torch.utils.data.Dataset):
    """Item (epoch, i) of an ImageFiles tree: (the file's bytes as a uint8 tensor, label, i)."""

    def __init__(self, files):
        self.samples = files.samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, key):
        _, i = key
        path, label = self.samples[i]
        try:
            with open(path, "rb") as f:
                data = bytearray(f.read())
        except OSError as e:
            raise DataError(f"cannot read image {path}: {e.strerror or e}") from e
        # An ordinary tensor: it crosses to the main process through shared memory (the
        # memory-mapped one of torchvision.io.read_file does not survive that).
        return torch.frombuffer(data, dtype=torch.uint8), label, i


def _collate(items):
    return [d for d, _, _ in items], torch.tensor([y for _, y, _ in items]), [i for _, _, i in items]


def _is_jpeg(data):
    return data.numel() > 2 and int(data[0]) == 0xFF and int(data[1]) == 0xD8


def decode_batch(datas, device):
    """RGB uint8 (3, H, W) images on ``device``: JPEGs in one batched decode there, the rest on
    the CPU."""
    images = [None] * len(datas)
    jpeg = [k for k, d in enumerate(datas) if _is_jpeg(d)]
    if jpeg:
        decoded = decode_jpeg([datas[k] for k in jpeg], mode=ImageReadMode.RGB, device=device)
        for k, image in zip(jpeg, decoded):
            images[k] = image
    for k, d in enumerate(datas):
        if images[k] is None:
            images[k] = decode_image(d, mode=ImageReadMode.RGB).to(device)
    return images


class DeviceDecodeLoader(EpochLoader):
    """Batches of an ImageFiles tree, decoded, cropped and normalised on ``device``."""

    def __init__(self, files, batches, device, mean, std, train, workers=4, size=224,
                 resize=256, channels_last=False, policy=AugmentPolicy()):
        self.batches, self.device, self.train = batches, torch.device(device), train
        self.size, self.resize, self.policy = size, resize, policy
        self.num_images = len(files.samples)
        self.loader = torch.utils.data.DataLoader(
            EncodedImages(files), batch_sampler=TaggedBatches(batches), num_workers=workers,
            collate_fn=_collate, persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None, worker_init_fn=ignore_stop_signals,
            generator=own_generator())
        self.normalize = Normalize(mean, std, device, channels_last)

    def view(self, image, index):
        image = image.float()
        if not self.train:
            image = TF.resize(image, [self.resize], antialias=True)
            return TF.center_crop(image, [self.size, self.size])
        # The draws of the PIL path's RandomResizedCrop + RandomHorizontalFlip, in its order and
        # from the same seeded RNG: both paths crop and mirror every image alike.
        with image_rng(self.batches.seed, self.batches.epoch, index):
            top, left, h, w = T.RandomResizedCrop.get_params(image, scale=(0.08, 1.0),
                                                             ratio=(3 / 4, 4 / 3))
            flip = bool(torch.rand(1) < 0.5)
        image = TF.resized_crop(image, top, left, h, w, [self.size, self.size], antialias=True)
        return image.flip(-1) if flip else image

    def __iter__(self):
        policy = self.train and self.policy.enabled
        if policy:
            # Every image's ops for the epoch, indexed by image, as on cifar.py's DeviceLoader.
            policy_draws = self.policy.epoch_draws(self.num_images, self.batches.seed,
                                                   self.batches.epoch, (self.size, self.size))
        for datas, y, indices in self.loader:
            images = decode_batch(datas, self.device)
            x = torch.stack([self.view(im, i) for im, i in zip(images, indices)])
            if policy:
                # The policy's ops are defined on 8-bit pixels, as the PIL path has them.
                x = x.round().clamp(0, 255).to(torch.uint8)
                x = apply_policy(x, policy_draws.rows(torch.tensor(indices)).to(self.device))
            yield self.normalize(x), to_device(y, self.device)
