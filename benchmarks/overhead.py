"""``bench.py overhead``: a real cifar.py run against import + its images at the bare step rate
+ the bare evaluation (CPU target: <= 1.10x)."""
import os
import subprocess
import sys
import time

import torch

import models

from .fixtures import REPO, require_archive, write_cifar_folder
from .step import Speed, time_steps
from .timing import sync

__all__ = ["time_eval", "bench_overhead"]


def time_eval(model: torch.nn.Module, device: str, images: torch.Tensor, batch: int) -> float:
    """Seconds for one no-grad pass over ``images`` (N, 3, H, W float) in batches."""
    model = model.to(device).eval()
    with torch.no_grad():
        model(images[:batch])
        sync(device)
        start = time.perf_counter()
        for i in range(0, len(images), batch):
            model(images[i:i + batch])
        sync(device)
    return time.perf_counter() - start


def bench_overhead(args) -> None:
    """cifar.py's wall time vs import + its images at the bare step rate + bare evaluation.

    A shared machine's noise only ever adds time, to either side of the ratio. So each round
    measures every quantity once (import, bare step as the best of --windows, bare evaluation,
    cifar.py), each round's ratio is printed, and the ratio judged is that of the minima."""
    require_archive(args.npz, "overhead")
    work = write_cifar_folder(args.npz, os.path.join(args.scratch, "overhead"), args.train,
                              args.test)
    torch.manual_seed(0)
    model, test_images = models.cifar.resnet(depth=20), torch.randn(args.test, 3, 32, 32)

    def expected(import_time, step, eval_time):
        return import_time + args.epochs * (args.train / args.batch * step + eval_time)

    rounds = []
    for r in range(args.repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, torchvision"], check=True)
        import_time = time.perf_counter() - start
        step = time_steps(model, torch.device("cpu"), args.batch, 32, Speed(), args.timing,
                          10).best
        eval_time = time_eval(model, "cpu", test_images, 100)
        start = time.perf_counter()
        ran = subprocess.run([sys.executable, os.path.join(REPO, "cifar.py"), "-a", "resnet",
                              "--depth", "20", "--data", work, "--epochs", str(args.epochs),
                              "--train-batch", str(args.batch), "--manualSeed", "1", "-c",
                              os.path.join(work, f"run{r}"), "--gpu-id", "cpu"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if ran.returncode:  # its warnings are not this bench's output; its failure is
            raise SystemExit(f"error: the timed cifar.py run failed: "
                             f"{(ran.stderr.strip().splitlines() or ['?'])[-1]}")
        run_time = time.perf_counter() - start
        rounds.append((import_time, step, eval_time, run_time))
        print(f"round {r + 1}: import torch+torchvision {import_time:.2f} s; bare step (batch "
              f"{args.batch}) {step * 1000:.1f} ms; bare evaluation of {args.test} images "
              f"{eval_time:.2f} s; cifar.py {run_time:.2f} s; compute + import "
              f"{expected(import_time, step, eval_time):.2f} s; ratio "
              f"{run_time / expected(import_time, step, eval_time):.3f}", flush=True)
    import_time, step, eval_time, run_time = (min(column) for column in zip(*rounds))
    print(f"cifar.py -a resnet --depth 20, {args.epochs} epochs of {args.train} images, minima "
          f"of {args.repeats} rounds: cifar.py {run_time:.2f} s; model compute + import: "
          f"{expected(import_time, step, eval_time):.2f} s; ratio "
          f"{run_time / expected(import_time, step, eval_time):.3f} (target <= 1.10)")
