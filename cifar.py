#!/usr/bin/env python
"""Train or evaluate a CIFAR-10/100 classifier (or MNIST, Fashion-MNIST, KMNIST, SVHN with -d).

    python cifar.py -a resnet --depth 20 --epochs 164 --schedule 81 122 -c checkpoints/cifar10/resnet-20
    python cifar.py -a l_resnext --depth 29 --cardinality 8 --widen-factor 4      # GN+WS ResNeXt
    python cifar.py -e --resume checkpoints/cifar10/resnet-20                        # evaluate
"""
import models
from utils import distributed
from utils.data.cifar import cifar_loaders
from utils.data.datasets import DATASETS, load_dataset
from utils.seeding import seed_everything
from utils.settings import run
from utils.settings.scripts import cifar_flags
from utils.train.recipe import make_recipe


def main(argv=None):
    # Flags (a resumed run takes its checkpoint's recorded ones), then the device: nothing asks
    # CUDA anything before --gpu-id has chosen the GPU. Bad model flags fail before the data.
    settings, checkpoint = run.read_settings(cifar_flags(), argv)
    device, gpu_count = run.select_device(settings.device, settings.recipe.amp)
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
                            settings.device.channels_last, distributed.shard())

    # Model, recipe (loss, optimizer, schedule, regularisers, EMA), and where a resume continues
    print(f"==> creating model '{settings.model.arch}'")
    model = run.prepare_model(network, device, gpu_count, settings)
    recipe = make_recipe(model.raw, settings.recipe, num_classes, len(loaders.train),
                         settings.seed)
    plan = run.start_plan(settings, checkpoint, model.raw, recipe)

    # Evaluate; or train, evaluating every epoch: log.txt, checkpoints, then the curves
    if settings.evaluate:
        return run.report_evaluation(model, loaders.test, recipe, plan, train_set.classes,
                                     num_classes)
    record = run.run_record(settings, num_classes, checkpoint)
    return run.train_and_log(model, loaders, recipe, plan, record)


if __name__ == "__main__":
    run.run_main(main)
