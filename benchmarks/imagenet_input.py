"""``bench.py pipeline imagenet``: imagenet.py's loaders (the default --decode cpu, --decode pil,
and --decode device with --device-decode) against torchvision's reference recipe and the
decode-only limit, train and val, timed two ways:

- together: every contender built in this process, taking turns pass by pass;
- alone (unless --no-alone): each contender in a process of its own, as a user runs it
  (benchmarks.alone), taking turns process by process.

Both print medians, the rate per worker and the ratio to the reference's."""
import os
import statistics

import torch

from utils.data.workers import stop_workers

from .alone import time_alone
from .fixtures import SHARED_NPZ, require_archive, synthetic_imagenet
from .pipeline import LoaderSetup, imagenet_contender, imagenet_paths, prepare_host, time_passes

__all__ = ["bench_imagenet_pipeline", "print_rates"]


def bench_imagenet_pipeline(args) -> None:
    """The benchmark of the parsed ``args``: over --data, or over JPEGs made from --npz."""
    data = args.data
    if data is None:
        npz = args.npz or SHARED_NPZ
        require_archive(npz, "pipeline imagenet without --data")
        data = synthetic_imagenet(npz, os.path.join(args.scratch, "jpegs"), args.images)
    setup = LoaderSetup(args.batch, args.workers, args.device, args.channels_last)
    names = imagenet_paths(args.device_decode)
    device = torch.device(args.device)
    prepare_host(device)
    contenders = {split: {name: loader for name in names
                          if (loader := imagenet_contender(name, data, split, setup))}
                  for split in ("train", "val")}
    together = {split: time_passes(loaders, device, args.windows)
                for split, loaders in contenders.items()}
    for loaders in contenders.values():  # their workers end before the lone processes start
        for loader in loaders.values():
            stop_workers(loader.loader)
    print_rates(together, names, data, args, "together: in this process, taking turns pass by "
                "pass")
    if not args.no_alone:
        print_rates(time_alone(data, names, setup, args.windows), names, data, args,
                    "alone: each in a process of its own, taking turns process by process",
                    suffix=" (alone)")


def print_rates(seconds: dict, names: list, data: str, args, how: str, suffix: str = "") -> None:
    """From seconds per image ({split: {name: [one per pass]}}): the table of median images/s
    per path and split, per worker and against the reference, then a line per path:
    NAME{suffix}: RATE img/s median."""
    rates = {split: {name: 1 / statistics.median(t) for name, t in by_name.items()}
             for split, by_name in seconds.items()}
    per_worker = max(1, args.workers)
    print(f"imagenet pipelines over {data}: {args.workers} workers, batch {args.batch}, "
          f"delivered to {args.device}; medians of {args.windows} passes, {how}")
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
            print(f"{name if split == 'train' else name + '-val'}{suffix}: {rate:.1f} img/s "
                  "median")
