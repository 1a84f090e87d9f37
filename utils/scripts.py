"""The command lines of the two training scripts: the table's shared flags
(utils.settings.table) with each script's defaults (the reference's, but imagenet.py's
--schedule, the paper's 30 60), and the flags only one script has, declared as the table's are.
bench.py and export.py read model flags and checkpoints through these too. (Here, not in
utils.settings, because the choices of these flags are the data's and the models': the datasets
and decoders that exist, and the architectures.)"""
import operator
import os
from typing import Optional

import models

from .data.cifar import LOADERS
from .data.datasets import DATASETS
from .data.folder_loaders import DECODE_PATHS
from .settings.flags import ScriptFlags, ScriptSpec
from .settings.flag import Flag, Range, at_least
from .settings.page import flags_table, with_table
from .settings.table import SHARED_FLAGS
from .settings.values import INTERPOLATIONS, MAX_IMAGE_SIDE, ImageViews

__all__ = ["cifar_flags", "imagenet_flags", "CIFAR", "IMAGENET", "script_flags_for",
           "write_flags_page"]

CIFAR_FLAGS = (
    Flag(("-d", "--dataset"), "dataset", "the dataset (default: %(default)s)",
         default="cifar10", choices=tuple(sorted(DATASETS)), into="data.dataset"),
    Flag(("--data",), "data", "folder with torchvision's raw files of the dataset "
                              "(cifar-10-batches-py/, MNIST/raw/, train_32x32.mat, ...), or "
                              "train/<class>/ and test/<class>/ image folders (default: "
                              "%(default)s; --resume: the run's own)",
         default="./data", metavar="DIR", into="data.root", on_resume="recall", must_exist=True),
    Flag(("--no-download",), "data", "never download the dataset when --data holds none",
         kind="switch", into="data.download", convert=operator.not_),
    Flag(("--loader",), "data", "device: whole dataset on the training device, batched "
                                "augmentation (default); dataloader: per-image torchvision "
                                "transforms in --workers processes",
         default=LOADERS[0], choices=LOADERS, into="data.loader", on_resume="recall"),
    Flag(("--block-name",), "model", "ResNet/PreResNet block: BasicBlock (depth 6n+2) or "
                                     "Bottleneck (depth 9n+2)",
         default="BasicBlock", into="options.block_name"),
    Flag(("--growthRate",), "model", "DenseNet growth rate (default: %(default)s)", kind=int,
         default=12, into="options.growthRate", range=at_least(1)),
    Flag(("--compressionRate",), "model", "DenseNet compression rate (theta) (default: "
                                          "%(default)s)",
         kind=int, default=2, into="options.compressionRate", range=at_least(1)),
    Flag(("--alpha",), "model", "PyramidNet: total widening over all blocks (default: "
                                "%(default)s)",
         kind=int, default=48, into="options.alpha", range=at_least(0)),
    Flag(("--base-channels",), "model", "Shake-Shake: width d of the first stage, as in 2x96d "
                                        "(default: %(default)s)",
         kind=int, default=96, into="options.base_channels", range=at_least(1)),
)

IMAGENET_FLAGS = (
    Flag(("-d", "--data"), "data", "folder with train/ and val/ ImageFolder trees (or "
                                   "ImageNet's flat val/ with LOC_val_solution.csv beside it); "
                                   "required, but for --resume, which reads the run's own",
         metavar="DIR", into="data.root", on_resume="recall", must_exist=True),
    Flag(("--decode",), "data", "cpu: the -j workers decode (torchcodec) and crop on uint8 "
                                "tensors (default); pil: the reference's PIL pipeline, pixel "
                                "for pixel; device: workers read bytes, JPEGs are decoded "
                                "(nvJPEG on CUDA), cropped and resized on the training device",
         default="cpu", choices=DECODE_PATHS, into="data.decode", on_resume="recall"),
    Flag(("--train-crop-size",), "dataset", "side of the training crops (RandomResizedCrop) "
                                            "(default: %(default)s)",
         kind=int, default=ImageViews.train_crop, metavar="PX",
         range=at_least(1, MAX_IMAGE_SIDE),
         into="views.train_crop"),
    Flag(("--val-resize-size",), "dataset", "evaluation: the shorter side the images are "
                                            "resized to before the centre crop (default: "
                                            "%(default)s)",
         kind=int, default=ImageViews.val_resize, metavar="PX",
         range=at_least(1, MAX_IMAGE_SIDE),
         into="views.val_resize"),
    Flag(("--val-crop-size",), "dataset", "evaluation: the side of the centre crop (default: "
                                          "%(default)s)",
         kind=int, default=ImageViews.val_crop, metavar="PX",
         range=at_least(1, MAX_IMAGE_SIDE),
         into="views.val_crop"),
    Flag(("--interpolation",), "dataset", "the resampling filter of every crop and resize, "
                                          "antialiased (default: %(default)s)",
         default=ImageViews.interpolation, choices=INTERPOLATIONS, into="views.interpolation"),
    Flag(("--mean",), "dataset", "per-channel mean of the normalisation (default: ImageNet's, "
                                 "%(default)s)",
         kind=float, nargs=3, default=ImageViews.mean, metavar=("R", "G", "B"),
         into="views.mean", convert=tuple),
    Flag(("--std",), "dataset", "per-channel standard deviation of the normalisation (default: "
                                "ImageNet's, %(default)s)",
         kind=float, nargs=3, default=ImageViews.std, metavar=("R", "G", "B"),
         range=Range(above=0, words="positive"), into="views.std", convert=tuple),
    Flag(("--base-width",), "model", "ResNeXt width per group (default: %(default)s)",
         kind=int, default=4, into="options.baseWidth", range=at_least(1)),
    Flag(("--pretrained",), "run", "start from torchvision's ImageNet weights (torchvision "
                                   "models; on another class count, all but the classifier)", kind="switch", into="run.pretrained"),
)

CIFAR_EXAMPLES = """examples:
  python cifar.py -a resnet --depth 20 --epochs 164 --schedule 81 122 -c checkpoints/cifar10/resnet-20
  python cifar.py -a l_resnet --depth 20 --epochs 164 --schedule 81 122 -c checkpoints/cifar10/l_resnet-20
  python cifar.py -e --resume checkpoints/cifar10/l_resnet-20
"""
IMAGENET_EXAMPLES = """examples:
  python imagenet.py -a l_resnet50 --data ~/ILSVRC2012 --gpu-id 0,1,2,3 -c checkpoints/imagenet/l_resnet50
  python imagenet.py -a resnet50 --norm gn --ws --data ~/ILSVRC2012 --auto-resume -c checkpoints/imagenet/resnet50-gnws
  python imagenet.py -e --resume checkpoints/imagenet/l_resnet50
"""

CIFAR = ScriptSpec("cifar.py", "CIFAR-10/100 training", models.cifar.MODELS, image_size=32,
                   workers=4, own_flags=CIFAR_FLAGS, examples=CIFAR_EXAMPLES, defaults=dict(
                       arch="resnext", cardinality=8, gn_groups=8, epochs=300, train_batch=128,
                       test_batch=100, weight_decay=5e-4, schedule=(150, 225)))
IMAGENET = ScriptSpec("imagenet.py", "ImageNet training", models.imagenet.ARCHS, image_size=224,
                      workers=32, own_flags=IMAGENET_FLAGS, examples=IMAGENET_EXAMPLES,
                      defaults=dict(
                          arch="resnet18", cardinality=32, epochs=90,
                          train_batch=256,
                          test_batch=200, weight_decay=1e-4, schedule=(30, 60)))


def cifar_flags() -> ScriptFlags:
    """cifar.py's command line."""
    return ScriptFlags(CIFAR, SHARED_FLAGS)


def imagenet_flags() -> ScriptFlags:
    """imagenet.py's command line."""
    return ScriptFlags(IMAGENET, SHARED_FLAGS)


def script_flags_for(arch: str, script: Optional[str] = None) -> ScriptFlags:
    """The command line of the script that trained ``arch``: ``script``'s ("cifar.py",
    "imagenet.py", as a run record names it) where known, since both scripts have an alexnet
    and vggs, and they are different networks; else cifar.py's for its models, imagenet.py's
    for the rest (this project's ImageNet models and torchvision's)."""
    by_name = {CIFAR.script: cifar_flags, IMAGENET.script: imagenet_flags}
    if script in by_name:
        return by_name[script]()
    return cifar_flags() if arch in models.cifar.MODELS else imagenet_flags()



def write_flags_page(path: str = os.path.join("docs", "flags.md")) -> None:
    """Write docs/flags.md's table of every flag (utils.settings.page) from both scripts'."""
    with open(path) as f:
        page = f.read()
    table = flags_table({CIFAR.script: cifar_flags(), IMAGENET.script: imagenet_flags()})
    with open(path, "w") as f:
        f.write(with_table(page, table))


if __name__ == "__main__":
    write_flags_page()
    print("wrote the flags table of docs/flags.md")
