"""``bench.py pipeline``: images/s a loader alone delivers to the device. cifar.py's
DeviceLoader (with each AutoAugment-family policy, as ratios); and the contenders of
``pipeline imagenet`` (benchmarks.imagenet_input): imagenet.py's loaders, torchvision's
reference recipe and the decode-only limit. Contenders take turns pass by pass, so the
machine's load falls on all alike."""
import dataclasses
import os
import statistics
import time

import torch
import torchvision
import torchvision.transforms as T

from utils.cpu_memory import keep_freed_memory
from utils.data.datasets import CIFAR_MEAN, CIFAR_STD, ArrayDataset
from utils.data.image_files import FileItems, ImageFiles
from utils.data.decode import decode_file, read_bytes
from utils.data.folder_loaders import imagenet_loaders
from utils.data.loaders import BatchFormat, CropFlip, DeviceLoader, EpochBatches
from utils.scripts import cifar_flags, imagenet_flags
from utils.session.stages import read_settings
from utils.settings.values import IMAGENET_MEAN, IMAGENET_STD

from .timing import sync

__all__ = ["BENCH_POLICIES", "time_passes", "prepare_host", "bench_cifar_pipeline",
           "ReferenceLoader", "DecodeOnly", "LoaderSetup", "imagenet_contender",
           "imagenet_paths"]

# The policies `pipeline cifar --policies` measures, as cifar.py's flags.
BENCH_POLICIES = {"none": [], "--autoaugment cifar10": ["--autoaugment", "cifar10"],
                  "--randaugment 2 9": ["--randaugment", "2", "9"],
                  "--trivialaugment": ["--trivialaugment"]}


def time_passes(loaders: dict, device: torch.device, windows: int) -> dict:
    """Seconds per image of each loader, over ``windows`` passes after one warm-up pass; the
    loaders take turns, so the machine's load falls on all alike."""
    times = {name: [] for name in loaders}
    for epoch in range(windows + 1):
        for name, loader in loaders.items():
            loader.set_epoch(epoch)
            start = time.perf_counter()
            count = 0
            for x, _ in loader:
                count += x.shape[0]
            sync(device)
            if epoch:  # the first pass warms up
                times[name].append((time.perf_counter() - start) / count)
    return times


def prepare_host(device: torch.device) -> None:
    """The host as the scripts set it: on the CPU, batches reuse heap memory
    (utils.session.device)."""
    if device.type == "cpu":
        keep_freed_memory()


def bench_cifar_pipeline(args) -> None:
    """cifar.py's DeviceLoader over random images; with --policies, beside each policy."""
    device = torch.device(args.device)
    prepare_host(device)
    n = args.images
    g = torch.Generator().manual_seed(0)
    dataset = ArrayDataset(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8,
                                         generator=g), torch.zeros(n, dtype=torch.long), [])
    chosen = BENCH_POLICIES if args.policies else {"none": []}
    fmt = BatchFormat(CIFAR_MEAN, CIFAR_STD, args.channels_last)
    policies = {name: read_settings(cifar_flags(), flags).settings.data.policy
                for name, flags in chosen.items()}
    loaders = {name: DeviceLoader(dataset, EpochBatches(n, args.batch, True), device, fmt,
                                  CropFlip(policy=policy))
               for name, policy in policies.items()}
    times = time_passes(loaders, device, args.windows)
    for name, t in times.items():
        ratio = statistics.median(times["none"]) / statistics.median(t)
        print(f"DeviceLoader CIFAR {n} images, policy {name}: {1 / min(t):.0f} img/s best, "
              f"{1 / statistics.median(t):.0f} img/s median delivered to {device}"
              + (f"; {ratio:.2f}x the rate without" if name != "none" else ""))


class ReferenceLoader:
    """torchvision's reference recipe, as pytorch-classification's imagenet.py builds it:
    ImageFolder, RandomResizedCrop(224) + RandomHorizontalFlip (val: Resize(256) +
    CenterCrop(224)), ToTensor and Normalize in the workers, default collate."""

    def __init__(self, folder: str, train: bool, batch: int, workers: int,
                 device: torch.device):
        views = ([T.RandomResizedCrop(224), T.RandomHorizontalFlip()] if train else
                 [T.Resize(256), T.CenterCrop(224)])
        transform = T.Compose(views + [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        self.device = device
        self.loader = torch.utils.data.DataLoader(
            torchvision.datasets.ImageFolder(folder, transform), batch_size=batch,
            shuffle=train, num_workers=workers, pin_memory=device.type == "cuda",
            persistent_workers=train and workers > 0)

    def set_epoch(self, epoch: int) -> None:
        pass

    def __iter__(self):
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y


def decoded_width(path: str, label: int, i: int) -> torch.Tensor:
    """A FileItems item: the file decoded (torchcodec), then dropped but for its width."""
    return torch.tensor(decode_file(read_bytes(path), path).shape[-1])


class DecodeOnly(ReferenceLoader):
    """The decode-only limit of the default path: each file read and decoded, then dropped;
    nothing cropped, resized or collated but a count."""

    def __init__(self, folder: str, batch: int, workers: int, device: torch.device):
        self.device = device
        self.loader = torch.utils.data.DataLoader(
            FileItems(ImageFiles(folder), decoded_width), batch_size=batch,
            num_workers=workers, persistent_workers=workers > 0)

    def __iter__(self):
        for x in self.loader:
            yield x, None


@dataclasses.dataclass(frozen=True)
class LoaderSetup:
    """What every ``pipeline imagenet`` contender is built with: images per batch, loader
    workers, the device batches are delivered to, and NHWC batches or not."""
    batch: int
    workers: int
    device: str
    channels_last: bool = False


def imagenet_paths(device_decode: bool) -> list[str]:
    """The contenders of ``pipeline imagenet``: the reference, imagenet.py's paths (--decode
    device only with ``device_decode``), the decode-only limit (train only)."""
    return ["reference", "default", "pil"] + (["device"] if device_decode else []) + ["decode"]


def imagenet_contender(name: str, data: str, split: str, setup: LoaderSetup):
    """Contender ``name``'s loader of ``data``'s ``split`` ("train" or "val"), built as its
    script builds it; None for the decode-only limit's val."""
    folder, device = os.path.join(data, split), torch.device(setup.device)
    if name == "reference":
        return ReferenceLoader(folder, split == "train", setup.batch, setup.workers, device)
    if name == "decode":
        return (DecodeOnly(folder, setup.batch, setup.workers, device) if split == "train"
                else None)
    settings = read_settings(imagenet_flags(), [
        "--data", data, "--train-batch", str(setup.batch), "--test-batch", str(setup.batch),
        "--decode", "cpu" if name == "default" else name, "-j", str(setup.workers)]).settings
    _, loaders = imagenet_loaders(settings.data, device, 0, setup.channels_last)
    return loaders.train if split == "train" else loaders.test
