#!/usr/bin/env python
"""Train or evaluate an ImageNet classifier (any ImageFolder tree with train/ and val/).

    python imagenet.py -a l_resnet50 --data ~/ILSVRC2012 --gpu-id 0,1,2,3 -c checkpoints/imagenet/l_resnet50
    python imagenet.py -a l_resnext50 --cardinality 32 --base-width 4 --data ~/ILSVRC2012
    python imagenet.py -a resnet18 --pretrained -e --data ~/ILSVRC2012      # torchvision model
"""
import torchvision

import models
from models.imagenet.torchvision_models import torchvision_options, with_pair
from models.twins import PAIR_NAMES
from utils import distributed
from utils.data.datasets import class_folders, find_image_folder
from utils.data.imagenet import imagenet_loaders, loader_memory
from utils.messages import first_line
from utils.seeding import seed_everything
from utils.settings import run
from utils.settings.flags import UsageError
from utils.settings.scripts import imagenet_flags
from utils.train.checkpoint import CheckpointError
from utils.train.recipe import make_recipe


def imagenet_model(settings, num_classes, device):
    """The network of -a; with --pretrained, torchvision's ImageNet weights."""
    arch = settings.model.arch
    if not settings.pretrained:
        return run.build_model(models.imagenet.ARCHS, settings.model, num_classes, device)
    if arch in models.imagenet.MODELS:
        raise UsageError(f"--pretrained takes torchvision weights; {arch} has none there: use "
                         f"--weights PATH")
    if num_classes != 1000:
        raise UsageError(f"--pretrained weights have 1000 classes; {settings.data.root} has "
                         f"{num_classes}")
    try:
        network = torchvision.models.get_model(arch, weights="DEFAULT",
                                               **torchvision_options(arch))
    except Exception as e:
        raise CheckpointError(f"could not get torchvision's pretrained weights for {arch} "
                              f"(offline?): {first_line(e)}") from e
    pair = {k: v for k, v in settings.model.options.items() if k in PAIR_NAMES}
    try:
        return with_pair(network, arch, **pair)
    except ValueError as e:  # the converter's errors name the model
        raise UsageError(str(e)) from e


def main(argv=None):
    # Flags (a resumed run takes its checkpoint's recorded ones), then the device: nothing asks
    # CUDA anything before --gpu-id has chosen the GPU.
    settings, checkpoint = run.read_settings(imagenet_flags(), argv)
    device, gpu_count = run.select_device(settings.device, settings.recipe.amp)
    settings = settings.with_seed(run.choose_seed(settings.seed, settings.data.train_batch))
    seed_everything(settings.seed)

    # The classes are train/'s folders, read first (the model's size depends on them); then the
    # model and its --weights, refused before any image is listed if they do not fit
    classes = class_folders(find_image_folder(settings.data.root, "train"))
    num_classes = len(classes)
    run.check_resume(settings, checkpoint, num_classes)
    print(f"==> creating model '{settings.model.arch}'" +
          (" (pretrained)" if settings.pretrained else ""))
    network = imagenet_model(settings, num_classes, device)
    run.load_initial_weights(network, settings)
    if not settings.evaluate:
        run.check_run_folder(settings)

    # Data
    print(f"==> Preparing ImageNet-style data from {settings.data.root}")
    _, loaders = imagenet_loaders(settings.data, device, settings.seed,
                                  settings.device.channels_last, classes, distributed.shard())
    data = settings.data
    print(f"    Loaders: --decode {data.decode}, {data.workers} workers, at most "
          f"{loader_memory(data.workers, data.train_batch, data.test_batch) / 2 ** 20:,.0f} MiB "
          f"of batches in flight")

    # Model on the device, recipe (loss, optimizer, schedule, regularisers, EMA), and where a
    # resume continues
    model = run.prepare_model(network, device, gpu_count, settings)
    recipe = make_recipe(model.raw, settings.recipe, num_classes, len(loaders.train),
                         settings.seed)
    plan = run.start_plan(settings, checkpoint, model.raw, recipe)

    # Evaluate; or train, evaluating every epoch: log.txt, checkpoints, then the curves
    if settings.evaluate:
        return run.report_evaluation(model, loaders.test, recipe, plan, classes, num_classes)
    record = run.run_record(settings, num_classes, checkpoint)
    return run.train_and_log(model, loaders, recipe, plan, record)


if __name__ == "__main__":
    run.run_main(main)
