"""Each ``pipeline imagenet`` contender timed in a process of its own, as a user runs it: a
fresh interpreter that builds that contender's loaders alone (the host set as its script sets
it: heap reuse for imagenet.py's paths, nothing for the reference recipe), runs a warm-up pass
and a timed pass of train, then of val, and prints the two times as one JSON line. The parent
starts one such process per contender in turn, ``windows`` rounds.

    python -m benchmarks.alone DATA NAME --batch B --workers W --device D [--channels-last]
"""
import argparse
import json
import os
import subprocess
import sys
from typing import Optional

import torch

from .fixtures import REPO
from .pipeline import LoaderSetup, imagenet_contender, prepare_host, time_passes

__all__ = ["time_alone", "main"]

SPLITS = ("train", "val")


def time_alone(data: str, names: list, setup: LoaderSetup, windows: int) -> dict:
    """Seconds per image, {split: {name: [one per round]}}, of each contender in ``names``
    timed in its own process; a process that fails ends the benchmark with its last line."""
    seconds = {split: {} for split in SPLITS}
    for _ in range(windows):
        for name in names:
            command = [sys.executable, "-m", "benchmarks.alone", data, name, "--batch",
                       str(setup.batch), "--workers", str(setup.workers), "--device",
                       setup.device] + (["--channels-last"] if setup.channels_last else [])
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
            if done.returncode:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise SystemExit(f"error: the {name} contender's own process failed: {last}")
            for split, value in json.loads(done.stdout.strip().splitlines()[-1]).items():
                seconds[split].setdefault(name, []).append(value)
    return seconds


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("name")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args(argv)
    setup = LoaderSetup(args.batch, args.workers, args.device, args.channels_last)
    device = torch.device(setup.device)
    if args.name != "reference":  # the reference recipe's script leaves the allocator alone
        prepare_host(device)
    seconds = {}
    for split in SPLITS:
        loader = imagenet_contender(args.name, args.data, split, setup)
        if loader is not None:
            # One warm-up pass, then one timed: the times list holds the timed one.
            seconds[split] = time_passes({args.name: loader}, device, 1)[args.name][0]
    print(json.dumps(seconds))


if __name__ == "__main__":
    main()
