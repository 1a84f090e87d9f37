#!/usr/bin/env python
"""Train or evaluate an ImageNet classifier (any ImageFolder tree with train/ and val/).

    python imagenet.py -a l_resnet50 --data ~/ILSVRC2012 --gpu-id 0,1,2,3 -c checkpoints/imagenet/l_resnet50
    python imagenet.py -a l_resnext50 --cardinality 32 --base-width 4 --data ~/ILSVRC2012
    python imagenet.py -a resnet18 --pretrained -e --data ~/ILSVRC2012      # torchvision model
"""
import argparse
import sys

import torchvision
import torchvision.transforms as T

import models
from utils import cli, distributed
from utils.checkpoint import CheckpointError, load_weights
from utils.device_decode import DeviceDecodeLoader
from utils.data import IMAGENET_MEAN, IMAGENET_STD, ImageFiles, find_image_folder
from utils.loaders import EpochBatches, StreamLoader
from utils.misc import seed_everything
from utils.recipe import make_recipe, resume_from

TORCHVISION_MODELS = sorted(torchvision.models.list_models(module=torchvision.models))
ARCHS = sorted(set(models.imagenet.MODELS) | set(TORCHVISION_MODELS))


def parse_args(argv):
    parser = argparse.ArgumentParser(description="ImageNet training", allow_abbrev=False)
    parser.add_argument("-d", "--data", metavar="DIR", required=True,
                        help="folder with train/ and val/ ImageFolder trees")
    cli.add_training_flags(parser, workers=32, epochs=90, train_batch=256, test_batch=200,
                           weight_decay=1e-4, arch="resnet18", cardinality=32)
    parser.add_argument("--base-width", type=int, default=4, help="ResNeXt width per group")
    parser.add_argument("--decode", default="cpu", choices=["cpu", "device"],
                        help="cpu: PIL decoding and augmentation in the -j workers (default); "
                             "device: workers read bytes, JPEGs are decoded (nvJPEG on CUDA), "
                             "cropped and resized on the training device")
    parser.add_argument("--pretrained", action="store_true",
                        help="start from torchvision's ImageNet weights (torchvision models)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    return args, cli.explicit_flags(parser, argv)


def create_imagenet_model(args, num_classes):
    """This project's models by name, otherwise torchvision's (with --pretrained weights)."""
    if args.arch in models.imagenet.MODELS:
        if args.pretrained:
            raise cli.UsageError(f"--pretrained takes torchvision weights; {args.arch} has "
                                 f"none there: use --weights PATH")
        return cli.build_model(models.imagenet.MODELS, args, num_classes)
    if not args.pretrained:
        return torchvision.models.get_model(args.arch, num_classes=num_classes)
    try:
        model = torchvision.models.get_model(args.arch, weights="DEFAULT")
    except Exception as e:
        raise CheckpointError(f"could not get torchvision's pretrained weights for {args.arch} "
                              f"(offline?): {str(e).splitlines()[0]}") from e
    if num_classes != 1000:
        raise cli.UsageError(f"--pretrained weights have 1000 classes; {args.data} has "
                             f"{num_classes}")
    return model


def imagenet_loaders(args, device, seed):
    """RandomResizedCrop(224) + flip for training; Resize(256) + CenterCrop(224) for val."""
    train_set = ImageFiles(find_image_folder(args.data, "train"))
    val_set = ImageFiles(find_image_folder(args.data, "val"))
    train_batches = EpochBatches(len(train_set), args.train_batch, shuffle=True, seed=seed,
                                 **distributed.shard())
    val_batches = EpochBatches(len(val_set), args.test_batch, shuffle=False, **distributed.shard())
    if args.decode == "device":
        return (train_set.classes,
                DeviceDecodeLoader(train_set, train_batches, device, IMAGENET_MEAN, IMAGENET_STD,
                                   train=True, workers=args.workers,
                                   channels_last=args.channels_last),
                DeviceDecodeLoader(val_set, val_batches, device, IMAGENET_MEAN, IMAGENET_STD,
                                   train=False, workers=args.workers,
                                   channels_last=args.channels_last))
    train_transform = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(),
                                 T.PILToTensor()])
    val_transform = T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])
    return (train_set.classes,
            StreamLoader(train_set, train_transform, train_batches, device, IMAGENET_MEAN,
                         IMAGENET_STD, args.workers, args.channels_last),
            StreamLoader(val_set, val_transform, val_batches, device, IMAGENET_MEAN,
                         IMAGENET_STD, args.workers, args.channels_last))


def main(argv=None):
    # Parse: flags, then a resumed run's own model flags, then checks, all before the data.
    args, explicit = parse_args(argv)
    checkpoint = cli.resume_checkpoint(args, explicit)
    cli.check_args(args, ARCHS)
    device, gpu_count = cli.setup_device(args.gpu_id, "gpu_id" in explicit)
    cli.check_world(args)
    seed_everything(cli.choose_seed(args))
    if not args.evaluate:
        cli.check_writable(args.checkpoint)

    # Data
    print(f"==> Preparing ImageNet-style data from {args.data}")
    classes, train_loader, val_loader = imagenet_loaders(args, device, args.manualSeed)
    num_classes = len(classes)
    if checkpoint is not None:
        cli.check_num_classes(checkpoint, num_classes)

    # Model
    print(f"==> creating model '{args.arch}'" + (" (pretrained)" if args.pretrained else ""))
    model = create_imagenet_model(args, num_classes)
    if args.weights:
        load_weights(model, args.weights)
    model, raw_model = cli.prepare_model(model, device, gpu_count, args.channels_last,
                                         args.compile, args.ghost_batch)
    print(f"    Total params: {sum(p.numel() for p in raw_model.parameters()) / 1e6:.2f}M")
    # Loss, optimizer, schedule, regularisers, EMA
    recipe = make_recipe(raw_model, args, num_classes, len(train_loader))

    # Resume
    start_epoch, best_acc = args.start_epoch, 0.0
    if checkpoint is not None:
        print(f"==> Resuming from checkpoint {args.resume}")
        start_epoch, best_acc = resume_from(checkpoint, raw_model, recipe)
    if args.evaluate:
        print("\nEvaluation only")
        cli.report_evaluation(model, val_loader, recipe, args, device, classes,
                              num_classes)
        return

    # Train and evaluate every epoch; log.txt, checkpoints, then the curves
    title = f"ImageNet-{args.arch}"
    best_acc = cli.train_and_log(args, title, model, raw_model, (train_loader, val_loader),
                                 recipe, device, start_epoch, best_acc, num_classes,
                                 resumed=checkpoint is not None)
    print("Best acc:")
    print(best_acc)


if __name__ == "__main__":
    cli.run_main(main)
