"""``bench.py pipeline``: images/s a loader alone delivers to the device. cifar.py's
DeviceLoader (with each AutoAugment-family policy, as ratios), or imagenet.py's loaders against
torchvision's reference recipe and the decode-only limit, the contenders taking turns pass by
pass so the machine's load falls on all alike."""
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

from .fixtures import SHARED_NPZ, require_archive, synthetic_imagenet
from .timing import sync

__all__ = ["BENCH_POLICIES", "time_passes", "bench_pipeline", "ReferenceLoader", "DecodeOnly"]

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


def bench_pipeline(args) -> None:
    """The pipeline benchmark of the parsed ``args``."""
    device = torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as the scripts do on the CPU (utils.session.device)
    if args.pipeline == "cifar":
        bench_cifar_pipeline(args, device)
    else:
        bench_imagenet_pipeline(args, device)


def bench_cifar_pipeline(args, device: torch.device) -> None:
    """cifar.py's DeviceLoader over random images; with --policies, beside each policy."""
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


def bench_imagenet_pipeline(args, device: torch.device) -> None:
    """imagenet.py's loaders (the default --decode cpu, --decode pil, and --decode device with
    --device-decode) against torchvision's reference recipe and the decode-only limit, train
    and val, taking turns pass by pass: medians, their rate per worker and their ratio to the
    reference's."""
    data = args.data
    if data is None:
        npz = args.npz or SHARED_NPZ
        require_archive(npz, "pipeline imagenet without --data")
        data = synthetic_imagenet(npz, os.path.join(args.scratch, "jpegs"), args.images)
    paths = ["default", "pil"] + (["device"] if args.device_decode else [])
    contenders = {"train": {}, "val": {}}
    for split in ("train", "val"):
        folder = os.path.join(data, split)
        contenders[split]["reference"] = ReferenceLoader(folder, split == "train", args.batch,
                                                         args.workers, device)
        for path in paths:
            settings = read_settings(imagenet_flags(), [
                "--data", data, "--train-batch", str(args.batch), "--test-batch",
                str(args.batch), "--decode", "cpu" if path == "default" else path,
                "-j", str(args.workers)]).settings
            _, loaders = imagenet_loaders(settings.data, device, 0, args.channels_last)
            contenders[split][path] = loaders.train if split == "train" else loaders.test
    contenders["train"]["decode"] = DecodeOnly(os.path.join(data, "train"), args.batch,
                                               args.workers, device)
    rates = {split: {name: 1 / statistics.median(t) for name, t in
                     time_passes(loaders, device, args.windows).items()}
             for split, loaders in contenders.items()}
    print_rates(rates, ["reference"] + paths + ["decode"], data, args)


def print_rates(rates: dict, names: list, data: str, args) -> None:
    """The table of images/s per path and split, per worker and against the reference, then a
    line per path: NAME: RATE img/s median."""
    per_worker = max(1, args.workers)
    print(f"imagenet pipelines over {data}: {args.workers} workers, batch {args.batch}, "
          f"delivered to {args.device}; medians of {args.windows} passes, taking turns")
    print(f"{'path':<10} {'train img/s':>12} {'per worker':>11} {'vs reference':>13} "
          f"{'val img/s':>10} {'per worker':>11} {'vs reference':>13}")
    for name in names:
        cells = []
        for split in ("train", "val"):
            rate = rates[split].get(name)
            cells.append("-" if rate is None else
                         f"{rate:12.1f} {rate / per_worker:11.1f} "
                         f"{rate / rates[split]['reference']:12.2f}x")
        print(f"{name:<10} {cells[0]:>38} {cells[1]:>37}")
    for split in ("train", "val"):
        for name, rate in rates[split].items():
            print(f"{name if split == 'train' else name + '-val'}: {rate:.1f} img/s median")
