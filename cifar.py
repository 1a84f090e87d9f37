#!/usr/bin/env python
"""Train or evaluate a CIFAR-10/100 classifier (or MNIST, Fashion-MNIST, KMNIST, SVHN with -d).

    python cifar.py -a resnet --depth 20 --epochs 164 --schedule 81 122 -c checkpoints/cifar10/resnet-20
    python cifar.py -a l_resnext --depth 29 --cardinality 8 --widen-factor 4      # GN+WS ResNeXt
    python cifar.py -e --resume checkpoints/cifar10/resnet-20                        # evaluate
"""
import models
from utils import distributed, run
from utils.data.datasets import DATASETS, dataset_stats, load_dataset
from utils.data.loaders import ArrayImages, DeviceLoader, EpochBatches, Loaders, StreamLoader
from utils.flags import ScriptFlags
from utils.seeding import seed_everything
from utils.train.recipe import make_recipe


def cifar_flags():
    """The shared flags with cifar.py's defaults, and the ones only cifar.py has."""
    flags = ScriptFlags("cifar.py", "CIFAR-10/100 training", models.cifar.MODELS, image_size=32,
                        workers=4, epochs=300, train_batch=128, test_batch=100, weight_decay=5e-4,
                        arch="resnext", cardinality=8)
    flags["dataset"].add("-d", "--dataset", default="cifar10", choices=sorted(DATASETS),
                         help="the dataset (default: %(default)s)")
    data, model = flags["data"], flags["model"]
    data.add("--data", default="./data", metavar="DIR",
             help="folder with torchvision's raw files of the dataset (cifar-10-batches-py/, "
                  "MNIST/raw/, train_32x32.mat, ...), or train/<class>/ and test/<class>/ image "
                  "folders (default: ./data)")
    data.add("--no-download", action="store_true",
             help="never download the dataset when --data holds none")
    data.add("--loader", default="device", choices=["device", "dataloader"],
             help="device: whole dataset on the training device, batched augmentation "
                  "(default); dataloader: per-image torchvision transforms in --workers processes")
    model.add("--block-name", type=str, default="BasicBlock", option="block_name",
              help="ResNet/PreResNet block: BasicBlock (depth 6n+2) or Bottleneck (depth 9n+2)")
    model.add("--growthRate", type=int, default=12, option="growthRate",
              help="DenseNet growth rate")
    model.add("--compressionRate", type=int, default=2, option="compressionRate",
              help="DenseNet compression rate (theta)")
    model.add("--alpha", type=int, default=48, option="alpha",
              help="PyramidNet: total widening over all blocks (default: 48)")
    model.add("--base-channels", type=int, default=96, option="base_channels",
              help="Shake-Shake: width d of the first stage, as in 2x96d (default: 96)")
    return flags


def cifar_loaders(train_set, test_set, data, device, seed, channels_last):
    """Training batches drawn per image from (seed, epoch); test batches in order. Crops of 32
    with 4 pixels of padding, mirror images where the dataset allows, then ``data.policy``
    (AutoAugment, RandAugment, TrivialAugment), batched on the device or torchvision's per
    image."""
    mean, std = dataset_stats(data.dataset, train_set)
    flip = DATASETS[data.dataset]["flip"]
    train_batches = EpochBatches(len(train_set), data.train_batch, shuffle=True, seed=seed,
                                 **distributed.shard())
    test_batches = EpochBatches(len(test_set), data.test_batch, shuffle=False,
                                **distributed.shard())
    if data.loader == "device":
        return Loaders(DeviceLoader(train_set, train_batches, device, mean, std, augment=True,
                                    flip=flip, channels_last=channels_last, policy=data.policy),
                       DeviceLoader(test_set, test_batches, device, mean, std,
                                    channels_last=channels_last))
    import torchvision.transforms as T
    policy = data.policy.torchvision_transform()
    train_transform = T.Compose([T.RandomCrop(32, padding=4)] +
                                ([T.RandomHorizontalFlip()] if flip else []) +
                                ([policy] if policy else []) + [T.PILToTensor()])
    return Loaders(StreamLoader(ArrayImages(train_set), train_transform, train_batches, device,
                                mean, std, data.workers, channels_last),
                   StreamLoader(ArrayImages(test_set), T.PILToTensor(), test_batches, device,
                                mean, std, data.workers, channels_last))


def main(argv=None):
    # Flags (a resumed run takes its checkpoint's recorded ones), then the device: nothing asks
    # CUDA anything before --gpu-id has chosen the GPU. Bad model flags fail before the data.
    settings, checkpoint = cifar_flags().parse(argv)
    device, gpu_count = run.select_device(settings.device)
    settings = settings.with_seed(run.choose_seed(settings.seed, settings.data.train_batch))
    seed_everything(settings.seed)
    num_classes = DATASETS[settings.data.dataset]["num_classes"]
    run.check_resume(settings, checkpoint, num_classes)
    network = run.build_model(models.cifar.MODELS, settings.model, num_classes, device)
    run.load_initial_weights(network, settings)
    if not settings.evaluate:
        run.check_run_folder(settings)

    # Data, on the training device
    print(f"==> Preparing dataset {settings.data.dataset}")
    train_set, test_set = load_dataset(settings.data.root, settings.data.dataset,
                                       download=settings.data.download)
    loaders = cifar_loaders(train_set, test_set, settings.data, device, settings.seed,
                            settings.device.channels_last)

    # Model, recipe (loss, optimizer, schedule, regularisers, EMA), and where a resume continues
    print(f"==> creating model '{settings.model.arch}'")
    model = run.prepare_model(network, device, gpu_count, settings)
    recipe = make_recipe(model.raw, settings.recipe, num_classes, len(loaders.train))
    plan = run.start_plan(settings, checkpoint, model.raw, recipe)

    # Evaluate; or train, evaluating every epoch: log.txt, checkpoints, then the curves
    if settings.evaluate:
        return run.report_evaluation(model, loaders.test, recipe, plan, train_set.classes,
                                     num_classes)
    record = run.run_record(settings, num_classes, checkpoint)
    return run.train_and_log(model, loaders, recipe, plan, record)


if __name__ == "__main__":
    run.run_main(main)
