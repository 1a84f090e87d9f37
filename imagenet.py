#!/usr/bin/env python
"""Train or evaluate an ImageNet classifier (any ImageFolder tree with train/ and val/).

    python imagenet.py -a l_resnet50 --data ~/ILSVRC2012 --gpu-id 0,1,2,3 -c checkpoints/imagenet/l_resnet50
    python imagenet.py -a l_resnext50 --cardinality 32 --base-width 4 --data ~/ILSVRC2012
    python imagenet.py -a resnet18 --pretrained -e --data ~/ILSVRC2012      # torchvision model
"""
import models
from utils import distributed
from utils.cli import run_main
from utils.data.decode import set_max_pixels
from utils.data.image_files import class_folders, find_image_folder
from utils.data.folder_loaders import imagenet_loaders, loader_memory
from utils.scripts import imagenet_flags
from utils.seeding import seed_everything
from utils.session import stages
from utils.session.build import (build_model, load_initial_weights, prepare_model,
                                 pretrained_model)
from utils.session.device import choose_seed, select_device
from utils.session.scores import report_evaluation
from utils.train.recipe import make_recipe


def main(argv=None):
    # Flags (a resumed run takes its checkpoint's recorded ones), then the device: nothing asks
    # CUDA anything before --gpu-id has chosen the GPU.
    settings, checkpoint = stages.read_settings(imagenet_flags(), argv)
    device, gpu_count = select_device(settings.device, settings.recipe.amp)
    settings = settings.with_seed(choose_seed(settings.seed, settings.data.train_batch))
    seed_everything(settings.seed)
    set_max_pixels(settings.data.max_pixels)  # every decode path's limit (utils.data.decode)

    # The classes are train/'s folders, read first (the model's size depends on them); then the
    # model as it trains and its --weights, refused before any image is listed if they do not fit
    classes = class_folders(find_image_folder(settings.data.root, "train"))
    num_classes = len(classes)
    stages.check_resume(settings, checkpoint, num_classes)
    print(f"==> creating model '{settings.model.arch}'" +
          (" (pretrained)" if settings.pretrained else ""))
    if settings.pretrained:
        network, initial = pretrained_model(models.imagenet.ARCHS, settings.model, num_classes)
        print(initial.line())
    else:
        network = build_model(models.imagenet.ARCHS, settings.model, num_classes, device)
        initial = None
    initial = (load_initial_weights(network, settings.weights, num_classes, settings.evaluate)
               or initial)
    if not settings.evaluate:
        stages.check_run_folder(settings)

    # Data
    print(f"==> Preparing ImageNet-style data from {settings.data.root}")
    _, loaders = imagenet_loaders(settings.data, device, settings.seed,
                                  settings.device.channels_last, classes, distributed.shard())
    data = settings.data
    print(f"    Loaders: --decode {data.decode}, {data.workers} workers, at most "
          f"{loader_memory(data) / 2 ** 20:,.0f} MiB "
          f"of batches in flight")
    stages.say_held_out(data.val_split, loaders)

    # Model on the device, recipe (loss, optimizer, schedule, regularisers, EMA), and where a
    # resume continues
    model = prepare_model(network, device, gpu_count, settings.device)
    recipe = make_recipe(model.raw, settings.recipe, num_classes, len(loaders.train),
                         settings.seed)
    plan = stages.start_plan(settings, checkpoint, model.raw, recipe)

    # Evaluate; or train, evaluating every epoch: log.txt, checkpoints, then the curves
    if settings.evaluate:
        return report_evaluation(model, loaders.test_split, recipe, plan, classes, num_classes)
    run_data = stages.RunData(num_classes, classes, initial, loaders.fmt)
    fields = stages.checkpoint_fields(settings, run_data, checkpoint)
    return stages.train_and_log(model, loaders, recipe, plan, fields)


if __name__ == "__main__":
    run_main(main, joins_group=True)
