#!/usr/bin/env python
"""Train or evaluate a CIFAR-10/100 classifier (or MNIST, Fashion-MNIST, KMNIST, SVHN with -d).

    python cifar.py -a resnet --depth 20 --epochs 164 --schedule 81 122 -c checkpoints/cifar10/resnet-20
    python cifar.py -a l_resnext --depth 29 --cardinality 8 --widen-factor 4      # GN+WS ResNeXt
    python cifar.py -e --resume checkpoints/cifar10/resnet-20                        # evaluate
"""
import argparse
import sys

import models
from utils import cli, distributed
from utils.checkpoint import load_weights
from utils.data import DATASETS, dataset_stats, load_dataset
from utils.loaders import ArrayImages, DeviceLoader, EpochBatches, StreamLoader
from utils.misc import seed_everything
from utils.recipe import make_recipe, resume_from


def parse_args(argv):
    parser = argparse.ArgumentParser(description="CIFAR-10/100 training", allow_abbrev=False)
    parser.add_argument("-d", "--dataset", default="cifar10", choices=sorted(DATASETS))
    parser.add_argument("--data", default="./data", metavar="DIR",
                        help="folder with torchvision's raw files of the dataset "
                             "(cifar-10-batches-py/, MNIST/raw/, train_32x32.mat, ...), or "
                             "train/<class>/ and test/<class>/ image folders (default: ./data)")
    parser.add_argument("--no-download", action="store_true",
                        help="never download the dataset when --data holds none")
    parser.add_argument("--loader", default="device", choices=["device", "dataloader"],
                        help="device: whole dataset on the training device, batched "
                             "augmentation (default); dataloader: per-image torchvision "
                             "transforms in --workers processes")
    cli.add_training_flags(parser, workers=4, epochs=300, train_batch=128, test_batch=100,
                           weight_decay=5e-4, arch="resnext", cardinality=8)
    parser.add_argument("--block-name", type=str, default="BasicBlock",
                        help="ResNet/PreResNet block: BasicBlock (depth 6n+2) or Bottleneck "
                             "(depth 9n+2)")
    parser.add_argument("--growthRate", type=int, default=12, help="DenseNet growth rate")
    parser.add_argument("--compressionRate", type=int, default=2,
                        help="DenseNet compression rate (theta)")
    parser.add_argument("--alpha", type=int, default=48,
                        help="PyramidNet: total widening over all blocks (default: 48)")
    parser.add_argument("--base-channels", type=int, default=96,
                        help="Shake-Shake: width d of the first stage, as in 2x96d (default: 96)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    return args, cli.explicit_flags(parser, argv)


def cifar_loaders(train_set, test_set, args, device, seed):
    """Training batches drawn per image from (seed, epoch); test batches in order. Crops of 32
    with 4 pixels of padding, and mirror images where the dataset allows."""
    mean, std = dataset_stats(args.dataset, train_set)
    flip = DATASETS[args.dataset]["flip"]
    train_batches = EpochBatches(len(train_set), args.train_batch, shuffle=True, seed=seed,
                                 **distributed.shard())
    test_batches = EpochBatches(len(test_set), args.test_batch, shuffle=False,
                                **distributed.shard())
    if args.loader == "device":
        return (DeviceLoader(train_set, train_batches, device, mean, std, augment=True,
                             flip=flip, channels_last=args.channels_last),
                DeviceLoader(test_set, test_batches, device, mean, std,
                             channels_last=args.channels_last))
    import torchvision.transforms as T
    train_transform = T.Compose([T.RandomCrop(32, padding=4)] +
                                ([T.RandomHorizontalFlip()] if flip else []) + [T.PILToTensor()])
    return (StreamLoader(ArrayImages(train_set), train_transform, train_batches, device,
                         mean, std, args.workers, args.channels_last),
            StreamLoader(ArrayImages(test_set), T.PILToTensor(), test_batches, device,
                         mean, std, args.workers, args.channels_last))


def main(argv=None):
    # Parse: flags, then a resumed run's own model flags, then checks, all before the data.
    args, explicit = parse_args(argv)
    checkpoint = cli.resume_checkpoint(args, explicit)
    cli.check_args(args, models.cifar.MODELS)
    device, gpu_count = cli.setup_device(args.gpu_id, "gpu_id" in explicit)
    cli.check_world(args)
    seed_everything(cli.choose_seed(args))
    num_classes = DATASETS[args.dataset]["num_classes"]
    if checkpoint is not None:
        cli.check_num_classes(checkpoint, num_classes)
    model = cli.build_model(models.cifar.MODELS, args, num_classes)  # bad model flags fail here
    if not args.evaluate:
        cli.check_writable(args.checkpoint)

    # Data
    print(f"==> Preparing dataset {args.dataset}")
    train_set, test_set = load_dataset(args.data, args.dataset, download=not args.no_download)
    train_loader, test_loader = cifar_loaders(train_set, test_set, args, device,
                                              args.manualSeed)

    # Model
    print(f"==> creating model '{args.arch}'")
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
        cli.report_evaluation(model, test_loader, recipe, args, device,
                              train_set.classes, num_classes)
        return

    # Train and evaluate every epoch; log.txt, checkpoints, then the curves
    title = {"cifar10": "cifar-10-", "cifar100": "cifar-100-"}.get(args.dataset,
                                                                  f"{args.dataset}-") + args.arch
    best_acc = cli.train_and_log(args, title, model, raw_model, (train_loader, test_loader),
                                 recipe, device, start_epoch, best_acc, num_classes,
                                 resumed=checkpoint is not None)
    print("Best acc:")
    print(best_acc)


if __name__ == "__main__":
    cli.run_main(main)
