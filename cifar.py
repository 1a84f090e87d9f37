#!/usr/bin/env python
"""Train or evaluate a CIFAR-10/100 classifier (or MNIST, Fashion-MNIST, KMNIST, SVHN with -d).

    python cifar.py -a resnet --depth 20 --epochs 164 --schedule 81 122 -c checkpoints/cifar10/resnet-20
    python cifar.py -a l_resnext --depth 29 --cardinality 8 --widen-factor 4      # GN+WS ResNeXt
    python cifar.py -e --resume checkpoints/cifar10/resnet-20                        # evaluate
"""
import models
from utils import distributed
from utils.cli import run_main
from utils.data.decode import set_max_pixels
from utils.data.cifar import cifar_loaders
from utils.data.datasets import class_count, is_image_folder, load_dataset
from utils.scripts import cifar_flags
from utils.seeding import seed_everything
from utils.session import stages
from utils.session.build import build_model, load_initial_weights, prepare_model
from utils.session.device import choose_seed, select_device
from utils.session.scores import report_evaluation
from utils.train.recipe import make_recipe


def main(argv=None):
    # Flags (a resumed run takes its checkpoint's recorded ones), then the device: nothing asks
    # CUDA anything before --gpu-id has chosen the GPU.
    settings, checkpoint = stages.read_settings(cifar_flags(), argv)
    device, gpu_count = select_device(settings.device, settings.recipe.amp)
    settings = settings.with_seed(choose_seed(settings.seed, settings.data.train_batch))
    seed_everything(settings.seed)
    set_max_pixels(settings.data.max_pixels)  # every decode path's limit (utils.data.decode)

    # The model as it trains, and its --weights: bad model flags fail before the data
    num_classes = stages.check_resume(settings, checkpoint,
                                      class_count(settings.data.root, settings.data.dataset))
    print(f"==> creating model '{settings.model.arch}'")
    network = build_model(models.cifar.MODELS, settings.model, num_classes, device)
    initial = load_initial_weights(network, settings.weights, num_classes, settings.evaluate)
    if not settings.evaluate:
        stages.check_run_folder(settings)

    # Data, on the training device
    print(f"==> Preparing dataset {settings.data.dataset}")
    train_set, test_set = load_dataset(settings.data.root, settings.data.dataset,
                                       download=settings.data.download)
    loaders = cifar_loaders(train_set, test_set, settings.data, device, settings.seed,
                            settings.device.channels_last, distributed.shard())
    stages.say_held_out(settings.data.val_split, loaders)

    # Model on the device, recipe (loss, optimizer, schedule, regularisers, EMA), and where a
    # resume continues
    model = prepare_model(network, device, gpu_count, settings.device)
    recipe = make_recipe(model.raw, settings.recipe, num_classes, len(loaders.train),
                         settings.seed)
    plan = stages.start_plan(settings, checkpoint, model.raw, recipe)

    # Evaluate; or train, evaluating every epoch: log.txt, checkpoints, then the curves
    if settings.evaluate:
        return report_evaluation(model, loaders.test_split, recipe, plan, train_set.classes,
                                 num_classes)
    run_data = stages.RunData(num_classes, train_set.classes, initial, loaders.fmt,
                              None if is_image_folder(settings.data.root, settings.data.dataset)
                              else settings.data.dataset)
    fields = stages.checkpoint_fields(settings, run_data, checkpoint)
    return stages.train_and_log(model, loaders, recipe, plan, fields)


if __name__ == "__main__":
    run_main(main, joins_group=True)
