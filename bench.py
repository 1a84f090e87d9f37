#!/usr/bin/env python
"""Training speed, measured. Four subcommands; every number comes from this run.

    step      throughput of the training step (forward, backward, SGD) of a model on synthetic
              on-device data, beside the reference style (fp32, NCHW, eager) and the BN twin of an
              l_* model, as ratios. Model flags are the scripts' own:
                  python bench.py step -a l_resnet50 --batch 128 --device cuda --amp bf16 --channels-last --compile
                  python bench.py step -a l_resnet --depth 20 --batch 128 --device cpu
    pipeline  images/s a loader alone delivers to the device: cifar.py's DeviceLoader (with
              --policies: also with each AutoAugment-family policy, as ratios), or imagenet.py's
              loaders (train and val) against torchvision's reference recipe and the decode-only
              limit, over --data or over JPEGs made from the real CIFAR-10 archive and upscaled
              to ImageNet's 500x375 (one line per path: NAME: RATE img/s median):
                  python bench.py pipeline cifar --device cuda
                  python bench.py pipeline cifar --device cuda --policies
                  python bench.py pipeline imagenet --images 2000 --workers 2 --device cpu
                  python bench.py pipeline imagenet --data ~/ILSVRC2012 --device cuda --device-decode
    overhead  a real cifar.py run against import + its images at the bare step rate + the bare
              evaluation (CPU target: <= 1.10x):
                  python bench.py overhead --train 5000 --epochs 2
    fold      inference (eval-mode forward) of a GN+WS model against the same model with WS
              folded into plain convolutions (export.py's deployment form), as a ratio:
                  python bench.py fold -a l_resnet --depth 20 --batch 128 --device cpu
"""
import argparse
import dataclasses
import io
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn

import models
from models.deploy import fold_weight_standardization
from utils.data.datasets import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, ArrayDataset
from utils.data.datasets import ImageFiles
from utils.data.decode import decode_file, read_bytes
from utils.cpu_memory import keep_freed_memory
from utils.data.imagenet import imagenet_loaders
from utils.data.loaders import BatchFormat, CropFlip, DeviceLoader, EpochBatches
from utils.settings.flags import COMPILE_FLAG
from utils.settings.run import read_settings
from utils.settings.scripts import cifar_flags, imagenet_flags, script_flags_for
from utils.settings.run import build_model, run_main
from utils.train.engine import autocast

REPO = os.path.dirname(os.path.abspath(__file__))
# The shared data beside the checkout, or where $WS_SHARED_DIR says (as the tests read it).
SHARED = os.environ.get("WS_SHARED_DIR", os.path.join(os.path.dirname(REPO), "shared"))
SHARED_NPZ = os.path.join(SHARED, "data", "cifar10-jpeg.npz")


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def model_settings(model_flags):
    """(script's archs, ModelChoice, image size) of model flags as cifar.py or imagenet.py reads
    them: cifar.py's command line for its own architectures, imagenet.py's for the rest."""
    arch = model_flags[model_flags.index("-a") + 1] if "-a" in model_flags else "l_resnet50"
    flags = script_flags_for(arch)
    return flags.archs, flags.model_choice(["-a", arch] + model_flags), flags.spec.image_size


def bn_twin(archs, choice):
    """The ModelChoice of the BatchNorm twin of an l_* model (l_resnet50 -> resnet50, from
    torchvision where we have none), or None."""
    twin = choice.arch[2:]
    if not choice.arch.startswith("l_") or twin not in archs:
        return None
    return dataclasses.replace(choice, arch=twin, given=choice.given - {"gn_groups"})


def time_steps(model, device, batch, size, speed, timing, num_classes):
    """Seconds per training step, (min, median) over the timing's windows. ``speed`` is
    (amp, channels_last, torch.compile's mode or None)."""
    amp, channels_last, compile_mode = speed
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device).to(memory_format=fmt)
    if compile_mode:
        model = torch.compile(model, mode=compile_mode)
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

    for _ in range(timing.warmup):
        step()
    sync(device)
    times = []
    for _ in range(timing.windows):
        start = time.perf_counter()
        for _ in range(timing.steps):
            step()
        sync(device)
        times.append((time.perf_counter() - start) / timing.steps)
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


def bench_step(args, model_flags):
    device = torch.device(args.device)
    archs, choice, size = model_settings(model_flags)
    size = args.image_size or size
    num_classes = 10 if size == 32 else 1000
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, batch {args.batch}, {size}x{size}, threads "
          f"{torch.get_num_threads()}")
    speed, reference = (args.amp, args.channels_last, args.compile), ("none", False, None)
    configs = [(choice, speed)]
    if speed != reference and not args.no_baseline:
        configs.append((choice, reference))
    twin = bn_twin(archs, choice)
    if twin and not args.no_twin:
        configs.append((twin, speed))
    runs = []
    for config, (amp, cl, comp) in configs:
        torch.manual_seed(0)
        model = build_model(archs, config, num_classes)
        t = time_steps(model, device, args.batch, size, (amp, cl, comp), args, num_classes)
        label = f"{config.arch} amp={amp} channels_last={cl} compile={comp or 'none'}"
        report(label, args.batch, t)
        runs.append((label, t))
    base = runs[0][1][1]
    for label, t in runs[1:]:
        print(f"ratio: {runs[0][0]} is {t[1] / base:.2f}x the speed of {label} "
              f"(median step {base * 1000:.1f} vs {t[1] * 1000:.1f} ms)")


def time_forward(model, x, timing):
    """Seconds per no-grad forward of ``x``, (min, median) over the timing's windows."""
    with torch.no_grad():
        for _ in range(timing.warmup):
            model(x)
        sync(x.device)
        times = []
        for _ in range(timing.windows):
            start = time.perf_counter()
            for _ in range(timing.steps):
                model(x)
            sync(x.device)
            times.append((time.perf_counter() - start) / timing.steps)
    return min(times), statistics.median(times)


def bench_fold(args, model_flags):
    device = torch.device(args.device)
    archs, choice, size = model_settings(model_flags)
    torch.manual_seed(0)
    model = build_model(archs, choice, 10 if size == 32 else 1000).to(device).eval()
    folded = fold_weight_standardization(model)
    x = torch.randn(args.batch, 3, size, size, device=device)
    print(f"device {device}, torch {torch.__version__}, batch {args.batch}, {size}x{size}, "
          f"threads {torch.get_num_threads()}, eval-mode forward")
    ws, plain = time_forward(model, x, args), time_forward(folded, x, args)
    report(f"{choice.arch} with WS", args.batch, ws)
    report(f"{choice.arch} with WS folded", args.batch, plain)
    print(f"ratio: folded is {ws[1] / plain[1]:.2f}x the speed of WS (median "
          f"{ws[1] * 1000:.1f} vs {plain[1] * 1000:.1f} ms)")


def real_cifar(npz, split, count):
    """The first ``count`` images of a split of the CIFAR-10 JPEG archive, round-robin over the
    classes (so any prefix is balanced), decoded: (uint8 N x 32 x 32 x 3, labels, class names)."""
    from PIL import Image
    archive = np.load(npz)
    jpeg, offsets = archive[f"{split}_jpeg"], archive[f"{split}_offsets"]
    labels = archive[f"{split}_labels"].astype(np.int64)
    per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    order = [i for group in zip(*per_class) for i in group][:count]
    images = np.stack([np.asarray(Image.open(io.BytesIO(
        jpeg[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB")) for i in order])
    return images, labels[order], [str(c) for c in archive["classes"]]


def write_cifar_folder(npz, out, train, test):
    """``train`` + ``test`` real images in CIFAR-10's official python layout under ``out``."""
    folder = os.path.join(out, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    (x, y, classes), (xt, yt, _) = real_cifar(npz, "train", train), real_cifar(npz, "test", test)
    parts = np.array_split(np.arange(len(y)), 5)
    batches = [(f"data_batch_{b + 1}", x[p], y[p]) for b, p in enumerate(parts)]
    for name, images, labels in batches + [("test_batch", xt, yt)]:
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump({"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
                         "labels": labels.tolist()}, f)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": classes}, f)
    return out


def synthetic_imagenet(npz, out, count, size=(500, 375)):
    """An ImageNet-like tree under ``out`` (train/ and val/, 10 classes) of ``count`` real
    CIFAR-10 images upscaled to ``size`` (ImageNet's typical 500x375) and saved as JPEG q90:
    decoding and resizing cost what they cost on ImageNet, though smooth upscaled pictures
    decode somewhat faster than photographs."""
    from PIL import Image
    # Both splits take the archive's images round-robin over the classes, so val/'s images
    # (half as many, at least 10) are of classes train/ has.
    for split, n in (("train", count), ("val", min(count, max(10, count // 2)))):
        images, labels, classes = real_cifar(npz, "train" if split == "train" else "test", n)
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = os.path.join(out, split, classes[label])
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(image).resize(size, Image.BICUBIC).save(
                os.path.join(folder, f"{i}.jpg"), quality=90)
    return out


# The policies `pipeline cifar --policies` measures, as cifar.py's flags.
BENCH_POLICIES = {"none": [], "--autoaugment cifar10": ["--autoaugment", "cifar10"],
                "--randaugment 2 9": ["--randaugment", "2", "9"],
                "--trivialaugment": ["--trivialaugment"]}


def time_passes(loaders, device, windows):
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


def bench_pipeline(args):
    device = torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as the scripts do on the CPU (utils.settings.run.select_device)
    if args.pipeline == "cifar":
        bench_cifar_pipeline(args, device)
    else:
        bench_imagenet_pipeline(args, device)


def bench_cifar_pipeline(args, device):
    """cifar.py's DeviceLoader over random images; with --policies, beside each policy."""
    n = args.images
    g = torch.Generator().manual_seed(0)
    dataset = ArrayDataset(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8,
                                         generator=g), torch.zeros(n, dtype=torch.long), [])
    chosen = BENCH_POLICIES if args.policies else {"none": []}
    fmt = BatchFormat(CIFAR_MEAN, CIFAR_STD, args.channels_last)
    policies = {name: read_settings(cifar_flags(), flags)[0].data.policy
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

    def __init__(self, folder, train, batch, workers, device):
        import torchvision
        import torchvision.transforms as T
        views = ([T.RandomResizedCrop(224), T.RandomHorizontalFlip()] if train else
                 [T.Resize(256), T.CenterCrop(224)])
        transform = T.Compose(views + [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        self.device = device
        self.loader = torch.utils.data.DataLoader(
            torchvision.datasets.ImageFolder(folder, transform), batch_size=batch,
            shuffle=train, num_workers=workers, pin_memory=device.type == "cuda",
            persistent_workers=train and workers > 0)

    def set_epoch(self, epoch):
        pass

    def __iter__(self):
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y


class DecodeOnly(ReferenceLoader):
    """The decode-only limit of the default path: each file read and decoded (torchcodec), then
    dropped; nothing cropped, resized or collated but a count."""

    def __init__(self, folder, batch, workers, device):
        files = ImageFiles(folder)
        self.device = device
        self.loader = torch.utils.data.DataLoader(
            _Decoded(files), batch_size=batch, num_workers=workers, persistent_workers=workers > 0)

    def __iter__(self):
        for x in self.loader:
            yield x, None


class _Decoded(torch.utils.data.Dataset):
    def __init__(self, files):
        self.samples = files.samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path = self.samples[i][0]
        return torch.tensor(decode_file(read_bytes(path), path).shape[-1])


def bench_imagenet_pipeline(args, device):
    """imagenet.py's loaders (the default --decode cpu, --decode pil, and --decode device with
    --device-decode) against torchvision's reference recipe and the decode-only limit, train
    and val, taking turns pass by pass: medians, their rate per worker and their ratio to the
    reference's."""
    data = args.data
    if data is None:
        if not os.path.isfile(args.npz):
            sys.exit(f"error: pipeline imagenet without --data makes its JPEGs from the "
                     f"CIFAR-10 archive {args.npz} (--npz PATH)")
        data = synthetic_imagenet(args.npz, os.path.join(args.scratch, "jpegs"), args.images)
    paths = ["default", "pil"] + (["device"] if args.device_decode else [])
    contenders = {"train": {}, "val": {}}
    for split in ("train", "val"):
        folder = os.path.join(data, split)
        contenders[split]["reference"] = ReferenceLoader(folder, split == "train", args.batch,
                                                         args.workers, device)
        for path in paths:
            settings, _ = read_settings(imagenet_flags(), [
                "--data", data, "--train-batch", str(args.batch), "--test-batch",
                str(args.batch), "--decode", "cpu" if path == "default" else path,
                "-j", str(args.workers)])
            _, loaders = imagenet_loaders(settings.data, device, 0, args.channels_last)
            contenders[split][path] = loaders.train if split == "train" else loaders.test
    contenders["train"]["decode"] = DecodeOnly(os.path.join(data, "train"), args.batch,
                                               args.workers, device)
    rates = {split: {name: 1 / statistics.median(t) for name, t in
                     time_passes(loaders, device, args.windows).items()}
             for split, loaders in contenders.items()}
    per_worker = max(1, args.workers)
    print(f"imagenet pipelines over {data}: {args.workers} workers, batch {args.batch}, "
          f"delivered to {device}; medians of {args.windows} passes, taking turns")
    print(f"{'path':<10} {'train img/s':>12} {'per worker':>11} {'vs reference':>13} "
          f"{'val img/s':>10} {'per worker':>11} {'vs reference':>13}")
    for name in ["reference"] + paths + ["decode"]:
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


def bench_overhead(args):
    """cifar.py's wall time vs import + its images at the bare step rate + bare evaluation.

    A shared machine's noise only ever adds time, to either side of the ratio. So each round
    measures every quantity once (import, bare step as the best of --windows, bare evaluation,
    cifar.py), each round's ratio is printed, and the ratio judged is that of the minima."""
    if not os.path.isfile(args.npz):
        sys.exit(f"error: the CIFAR-10 archive {args.npz} is needed for overhead (--npz PATH)")
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
        step = time_steps(model, "cpu", args.batch, 32, ("none", False, False), args, 10)[0]
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


def count(least, most=2 ** 31 - 1):
    """An argparse type: a whole number from ``least`` to ``most`` (a timing over no step
    would report a rate of 0 or divide by it)."""
    def parse(text):
        value = int(text)
        if not least <= value <= most:
            raise argparse.ArgumentTypeError(f"must be from {least} to {most}, got {value}")
        return value
    parse.__name__ = "int"
    return parse


def add_timing(parser, warmup=3, windows=5, steps=5):
    parser.add_argument("--warmup", type=count(0), default=warmup, help="untimed steps first")
    parser.add_argument("--windows", type=count(1), default=windows, help="timed windows (passes)")
    parser.add_argument("--steps", type=count(1), default=steps, help="steps per timed window")


def add_device(parser, channels_last=True):
    """--device (a CUDA GPU where there is one) and, where it applies, --channels-last."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="the device to time on")
    if channels_last:
        parser.add_argument("--channels-last", action="store_true",
                            help="NHWC model and batches")


def parser():
    top = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    commands = top.add_subparsers(dest="command", required=True)

    step = commands.add_parser(
        "step", allow_abbrev=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="training step throughput, with ratios",
        description="Any other flag is a model flag of cifar.py or imagenet.py (-a, --depth, "
                    "--cardinality, --gn-groups, ...), read by that script's own parser.")
    step.add_argument("--batch", type=count(1), default=128, help="images per step")
    step.add_argument("--image-size", type=count(8),
                      help="images of this side (none given: 32 for CIFAR models, else 224)")
    add_device(step)
    step.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"],
                      help="autocast precision")
    step.add_argument("--compile", **COMPILE_FLAG,
                      help="torch.compile's mode, as the scripts' --compile takes it")
    step.add_argument("--no-baseline", action="store_true",
                      help="skip the fp32 NCHW eager comparison")
    step.add_argument("--no-twin", action="store_true", help="skip the BN twin")
    add_timing(step)

    pipeline = commands.add_parser("pipeline", allow_abbrev=False,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                   help="images/s a loader delivers, without a model")
    pipeline.add_argument("pipeline", choices=["cifar", "imagenet"])
    pipeline.add_argument("--batch", type=count(1), default=128, help="images per batch")
    add_device(pipeline)
    pipeline.add_argument("--images", type=count(1), default=5000,
                          help="cifar: images in the dataset; imagenet without --data: JPEGs "
                               "to make from --npz")
    pipeline.add_argument("--data", help="imagenet: imagenet.py's --data (train/ and val/ "
                                         "image folders)")
    pipeline.add_argument("--npz", default=SHARED_NPZ, help="the CIFAR-10 JPEG archive")
    pipeline.add_argument("--workers", type=count(0, 256), default=8,
                          help="imagenet: loader workers")
    pipeline.add_argument("--device-decode", action="store_true",
                          help="imagenet: also time --decode device (decoding on --device)")
    pipeline.add_argument("--windows", type=count(1), default=5, help="timed passes over the data")
    pipeline.add_argument("--policies", action="store_true",
                          help="cifar: also each of " + ", ".join(list(BENCH_POLICIES)[1:]))

    fold = commands.add_parser(
        "fold", allow_abbrev=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="inference with WS vs with WS folded",
        description="Any other flag is a model flag of cifar.py or imagenet.py (-a, --depth, ...).")
    fold.add_argument("--batch", type=count(1), default=128, help="images per forward")
    add_device(fold, channels_last=False)
    add_timing(fold, warmup=2, windows=5, steps=5)

    overhead = commands.add_parser("overhead", allow_abbrev=False,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                   help="cifar.py wall time vs bare compute (CPU target)")
    overhead.add_argument("--npz", default=SHARED_NPZ, help="the CIFAR-10 JPEG archive")
    overhead.add_argument("--train", type=count(1), default=5000, help="training images")
    overhead.add_argument("--test", type=count(1), default=1000, help="images evaluated per epoch")
    overhead.add_argument("--epochs", type=count(1), default=2, help="epochs per round")
    overhead.add_argument("--batch", type=count(1), default=128, help="training batch")
    overhead.add_argument("--repeats", type=count(1), default=3, help="rounds")
    add_timing(overhead)
    return top


def main(argv=None):
    args, model_flags = parser().parse_known_args(argv)
    # What a benchmark writes (JPEGs, run folders) lives in one folder, removed at the end.
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        args.scratch = scratch
        run_command(args, model_flags)


def run_command(args, model_flags):
    if args.command == "step":
        bench_step(args, model_flags)
    elif args.command == "fold":
        bench_fold(args, model_flags)
    elif model_flags:
        parser().error(f"unrecognized arguments: {' '.join(model_flags)}")
    elif args.command == "pipeline":
        bench_pipeline(args)
    else:
        bench_overhead(args)


if __name__ == "__main__":
    run_main(main)  # a bad model flag or file: one line and the scripts' exit codes
