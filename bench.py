#!/usr/bin/env python
"""Training speed, measured. Three questions, one script; every number comes from this run.

1. Step throughput of a model (forward, backward, SGD step) on synthetic on-device data, with the
   chosen settings, beside the reference's style (fp32, NCHW, eager) and the BN twin of an l_*
   model, as ratios:
       python bench.py -a l_resnet50 --batch 128 --device cuda --amp bf16 --channels-last --compile
       python bench.py -a l_resnet --depth 20 --batch 128 --device cpu
2. The data pipeline alone: images/s the CIFAR DeviceLoader, or imagenet.py's training loader
   (--decode cpu or device) over --data or over JPEGs made from real CIFAR-10 images upscaled to
   ImageNet's 500x375, delivers to the device:
       python bench.py --pipeline cifar --device cuda
       python bench.py --pipeline imagenet --data ~/ILSVRC2012 --device cuda --decode device
       python bench.py --pipeline imagenet --train 2000 --workers 16 --device cuda
3. The overhead of a real cifar.py run over the model's own compute (CPU target: <= 1.10x):
       python bench.py --overhead --train 5000 --epochs 2
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn

import models
from utils.data import CIFAR_MEAN, CIFAR_STD, ArrayDataset
from utils.engine import autocast
from utils.loaders import DeviceLoader, EpochBatches

REPO = os.path.dirname(os.path.abspath(__file__))
SHARED_NPZ = os.path.join(os.path.dirname(REPO), "shared", "data", "cifar10-jpeg.npz")


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def build(arch, args, num_classes):
    """A CIFAR or ImageNet model by name (ours, else torchvision's) and its native image size."""
    options = dict(depth=args.depth, cardinality=args.cardinality, widen_factor=args.widen_factor,
                   block_name=args.block_name)
    if arch in models.cifar.MODELS and args.image_size in (None, 32):
        return models.create_model(models.cifar.MODELS, arch, num_classes=num_classes,
                                   **options), 32
    if arch in models.imagenet.MODELS:
        return models.create_model(models.imagenet.MODELS, arch, num_classes=num_classes), 224
    import torchvision
    return torchvision.models.get_model(arch, num_classes=num_classes), 224


def bn_twin(arch):
    """The BatchNorm twin of an l_* model (l_resnet50 -> resnet50), or None."""
    if not arch.startswith("l_"):
        return None
    twin = arch[2:]
    if twin in models.cifar.MODELS or twin in models.imagenet.MODELS:
        return twin
    import torchvision
    return twin if twin in torchvision.models.list_models() else None


def time_steps(model, device, batch, size, amp, channels_last, compile_model, warmup, windows,
               steps, num_classes=10):
    """Seconds per training step: (min, median) over ``windows`` windows of ``steps`` steps."""
    model = model.to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    if compile_model:
        model = torch.compile(model)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    criterion = nn.CrossEntropyLoss()
    x = torch.randn(batch, 3, size, size, device=device).to(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch,), device=device)

    def step():
        with autocast(device, amp):
            loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        times.append((time.perf_counter() - start) / steps)
    return min(times), statistics.median(times)


def time_eval(model, device, images, batch):
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


def report(label, batch, seconds):
    best, median = seconds
    print(f"{label:<44} {batch / best:10.1f} img/s best {batch / median:10.1f} img/s median "
          f"({median * 1000:.1f} ms/step)")


def bench_model(args):
    device = torch.device(args.device)
    torch.manual_seed(0)
    runs = []
    settings = (args.amp, args.channels_last, args.compile)
    model, size = build(args.arch, args, 1000 if args.image_size == 224 else 10)
    size = args.image_size or size
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, batch {args.batch}, {size}x{size}, threads "
          f"{torch.get_num_threads()}")
    configs = [(args.arch, settings)]
    if settings != ("none", False, False) and not args.no_baseline:
        configs.append((args.arch, ("none", False, False)))
    twin = bn_twin(args.arch)
    if twin and not args.no_twin:
        configs.append((twin, settings))
    for arch, (amp, cl, comp) in configs:
        model, _ = build(arch, args, 1000 if size == 224 else 10)
        t = time_steps(model, device, args.batch, size, amp, cl, comp, args.warmup,
                       args.windows, args.steps, 1000 if size == 224 else 10)
        label = f"{arch} amp={amp} channels_last={cl} compile={comp}"
        report(label, args.batch, t)
        runs.append((label, t))
    base = runs[0][1][1]
    for label, t in runs[1:]:
        print(f"ratio: {runs[0][0]} is {t[1] / base:.2f}x the speed of {label} "
              f"(median step {base * 1000:.1f} vs {t[1] * 1000:.1f} ms)")


def synthetic_imagenet(npz, out, count, size=(500, 375)):
    """An ImageNet-like tree under ``out`` (train/ and val/, 10 classes) of ``count`` real
    CIFAR-10 images upscaled to ``size`` (ImageNet's typical 500x375) and saved as JPEG q90:
    decoding and resizing cost what they cost on ImageNet, though smooth upscaled pictures
    decode somewhat faster than photographs."""
    from PIL import Image

    from utils.data import load_dataset
    unpack_cifar(npz, out, count, 10)
    train, val = load_dataset(out, download=False)
    for split, data in (("train", train), ("val", val)):
        for i in range(len(data)):
            folder = os.path.join(out, "imagenet", split, data.classes[int(data.labels[i])])
            os.makedirs(folder, exist_ok=True)
            image = Image.fromarray(data.images[i].permute(1, 2, 0).numpy())
            image.resize(size, Image.BICUBIC).save(os.path.join(folder, f"{i}.jpg"), quality=90)
    return os.path.join(out, "imagenet")


def bench_pipeline(args):
    device = torch.device(args.device)
    if args.pipeline == "imagenet":
        import imagenet
        if args.data is None:
            if not os.path.isfile(args.npz):
                sys.exit(f"error: --pipeline imagenet without --data makes its JPEGs from the "
                         f"CIFAR-10 archive {args.npz} (--npz PATH)")
            args.data = synthetic_imagenet(args.npz, tempfile.mkdtemp(prefix="bench-jpegs-"),
                                           args.train)
        # imagenet.py's own training loader, with its flags.
        options = argparse.Namespace(data=args.data, train_batch=args.batch,
                                     test_batch=args.batch, decode=args.decode,
                                     workers=args.workers, channels_last=args.channels_last)
        _, loader, _ = imagenet.imagenet_loaders(options, device, seed=0)
        label = (f"imagenet.py train loader, --decode {args.decode}, {args.workers} workers, "
                 f"{args.data}/train")
    else:
        n = args.train
        g = torch.Generator().manual_seed(0)
        dataset = ArrayDataset(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8,
                                             generator=g), torch.zeros(n, dtype=torch.long), [])
        loader = DeviceLoader(dataset, EpochBatches(n, args.batch, True), device, CIFAR_MEAN,
                              CIFAR_STD, augment=True, channels_last=args.channels_last)
        label = f"DeviceLoader CIFAR {n} images"
    times = []
    for epoch in range(args.windows + 1):
        loader.set_epoch(epoch)
        start = time.perf_counter()
        count = 0
        for x, _ in loader:
            count += x.shape[0]
        sync(device)
        if epoch:  # the first pass warms up
            times.append((time.perf_counter() - start) / count)
    print(f"{label}: {1 / min(times):.0f} img/s best, {1 / statistics.median(times):.0f} img/s "
          f"median delivered to {device}")


def unpack_cifar(npz, out, train, test):
    subprocess.run([sys.executable, os.path.join(os.path.dirname(npz), "cifar10_jpeg.py"),
                    "pickle", out, "--train", str(train), "--test", str(test)], check=True,
                   capture_output=True)


def bench_overhead(args):
    """cifar.py's wall time vs import + its images at the bare step rate + bare evaluation.

    A shared machine's noise only ever adds time, to either side of the ratio. So each round
    measures every quantity once (import, bare step as the best of --windows, bare evaluation,
    cifar.py), each round's ratio is printed, and the ratio judged is that of the minima."""
    if not os.path.isfile(args.npz):
        sys.exit(f"error: the CIFAR-10 archive {args.npz} is needed for --overhead (--npz PATH)")
    work = tempfile.mkdtemp(prefix="bench-overhead-")
    unpack_cifar(args.npz, work, args.train, args.test)
    torch.manual_seed(0)
    model, test_images = models.cifar.resnet(depth=20), torch.randn(args.test, 3, 32, 32)

    def expected(import_time, step, eval_time):
        return import_time + args.epochs * (args.train / args.batch * step + eval_time)

    rounds = []
    for r in range(args.repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, torchvision"], check=True)
        import_time = time.perf_counter() - start
        step = time_steps(model, "cpu", args.batch, 32, "none", False, False, args.warmup,
                          args.windows, args.steps)[0]
        eval_time = time_eval(model, "cpu", test_images, 100)
        start = time.perf_counter()
        subprocess.run([sys.executable, os.path.join(REPO, "cifar.py"), "-a", "resnet",
                        "--depth", "20", "--data", work, "--epochs", str(args.epochs),
                        "--train-batch", str(args.batch), "--manualSeed", "1", "-c",
                        os.path.join(work, f"run{r}"), "--gpu-id", "cpu"], check=True,
                       stdout=subprocess.DEVNULL)
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("-a", "--arch", default="l_resnet50")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--block-name", default="BasicBlock")
    parser.add_argument("--cardinality", type=int, default=8)
    parser.add_argument("--widen-factor", type=int, default=4)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--image-size", type=int, help="default: 32 for CIFAR models, else 224")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the fp32 NCHW eager comparison")
    parser.add_argument("--no-twin", action="store_true", help="skip the BN twin")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--windows", type=int, default=5, help="timed windows")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed window")
    parser.add_argument("--pipeline", choices=["cifar", "imagenet"],
                        help="time the data pipeline alone")
    parser.add_argument("--data", help="with --pipeline imagenet: imagenet.py's --data (train/ "
                        "and val/ image folders); default: --train JPEGs made from --npz")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--decode", default="cpu", choices=["cpu", "device"],
                        help="with --pipeline imagenet: PIL in the workers, or JPEG decoding "
                             "on --device")
    parser.add_argument("--overhead", action="store_true",
                        help="cifar.py wall time vs bare compute (CPU target)")
    parser.add_argument("--npz", default=SHARED_NPZ,
                        help="CIFAR-10 JPEG archive for --overhead and --pipeline imagenet")
    parser.add_argument("--train", type=int, default=5000,
                        help="images per training epoch (--overhead, --pipeline cifar), or "
                             "JPEGs to make (--pipeline imagenet without --data)")
    parser.add_argument("--test", type=int, default=1000, help="images evaluated per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of --overhead")
    args = parser.parse_args(argv)
    if args.overhead:
        bench_overhead(args)
    elif args.pipeline or args.data:
        args.pipeline = args.pipeline or "imagenet"
        bench_pipeline(args)
    else:
        bench_model(args)


if __name__ == "__main__":
    main()
