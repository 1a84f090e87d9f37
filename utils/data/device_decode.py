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
import torch
import torchvision.transforms.v2.functional as TF

from ..seeding import image_rng
from .decode import decode_batch, read_bytes
from .loaders import EpochLoader, Normalize, TaggedBatches, ignore_stop_signals, own_generator
from .loaders import data_loader, stop_workers, worker_error
from .policies import AugmentPolicy, apply_policy
from .transfer import to_device
from .views import centre_box, crop_and_flip

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
        return read_bytes(path), label, i


def _collate(items):
    return [d for d, _, _ in items], torch.tensor([y for _, y, _ in items]), [i for _, _, i in items]


class DeviceDecodeLoader(EpochLoader):
    """Batches of an ImageFiles tree, decoded, cropped and normalised on ``device``."""

    def __init__(self, files, batches, device, mean, std, train, workers=4, size=224,
                 resize=256, channels_last=False, policy=AugmentPolicy(), prefetch_factor=2):
        self.batches, self.device, self.train = batches, torch.device(device), train
        self.size, self.resize, self.policy = size, resize, policy
        self.paths = [path for path, _ in files.samples]
        self.loader = data_loader(
            EncodedImages(files), batch_sampler=TaggedBatches(batches), num_workers=workers,
            collate_fn=_collate, persistent_workers=train and workers > 0,
            prefetch_factor=prefetch_factor if workers > 0 else None,
            worker_init_fn=ignore_stop_signals, generator=own_generator())
        self.normalize = Normalize(mean, std, device, channels_last)

    def view(self, image, index):
        image = image.float()
        if not self.train:
            top, left, h, w = centre_box(image.shape[-2], image.shape[-1], self.resize,
                                         self.size)
            return TF.resized_crop(image, top, left, h, w, [self.size, self.size],
                                   antialias=True)
        # The draws of the other paths' RandomResizedCrop + RandomHorizontalFlip, in their order
        # and from the same seeded generator: every path crops and mirrors an image alike.
        with image_rng(self.batches.seed, self.batches.epoch, index):
            top, left, h, w, flip = crop_and_flip(image)
        image = TF.resized_crop(image, top, left, h, w, [self.size, self.size], antialias=True)
        return image.flip(-1) if flip else image

    def __iter__(self):
        policy = self.train and self.policy.enabled
        if policy:
            # Every image's ops for the epoch, indexed by image, as on cifar.py's DeviceLoader.
            policy_draws = self.policy.epoch_draws(len(self.paths), self.batches.seed,
                                                   self.batches.epoch, (self.size, self.size))
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
