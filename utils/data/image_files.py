"""ImageFolder trees: their listing (``class_folders``, ``list_image_folder``: root/<class>/
<image>, classes sorted as torchvision sorts them), read file by file for imagenet.py (and a
held-out part of it) or whole for cifar.py's ImageFolder data (utils.data.datasets).
``ImageFiles`` lists the files and labels; ``FileItems`` is the one dataset shell every loader
reads them through, with its own item function (decoded tensors, raw bytes, ...). ``val_files``
also reads ImageNet's own flat val/ with its label file."""
import csv
import os
from typing import Any, Callable, Optional, Sequence, Union

import torch
from PIL import Image

from .decode import pil_rgb
from .errors import DataError

__all__ = ["IMG_EXTENSIONS", "class_folders", "list_image_folder", "find_image_folder",
           "read_rgb", "ImageFiles", "FileItems", "VAL_LABELS", "val_files", "read_val_labels"]

Samples = list[tuple[str, int]]  # (image path, label) of every image of a tree
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def class_folders(root: str) -> list:
    """The class names of an ImageFolder tree: its sub-folders, sorted as torchvision sorts
    them (a listing of one folder, not of the images)."""
    try:
        found = sorted(e.name for e in os.scandir(root) if e.is_dir())
    except OSError as e:
        raise DataError(f"cannot read {root}: {e.strerror or e}") from e
    if not found:
        raise DataError(f"{root} has no class folders (expected {root}/<class>/<image files>)")
    return found


def list_image_folder(root: str, classes: Optional[list[str]] = None) -> tuple[list[str], Samples]:
    """(classes, [(path, label)]) of root/<class>/<image>, classes sorted as torchvision does.
    With ``classes`` (the training split's), each folder takes the label of its name there, so
    a split lacking a class keeps every other label right; a class unknown there is an error."""
    found = class_folders(root)
    if classes is None:
        classes = found
    unknown = [c for c in found if c not in classes]
    if unknown:
        raise DataError(f"{root} has class folder(s) {', '.join(unknown[:5])} that the "
                        f"training split does not have")
    samples, walked = [], {}
    for cls in found:
        label, folders = classes.index(cls), []
        for dirpath, _, files in os.walk(os.path.join(root, cls), followlinks=True):
            real = os.path.realpath(dirpath)
            if real in walked:  # a link back into the tree: its images would count again
                raise DataError(f"{dirpath} is {walked[real]} again (a symbolic link to a folder "
                                f"already read): remove the link, or copy the images")
            walked[real] = dirpath
            folders.append((dirpath, files))
        for dirpath, files in sorted(folders):  # the order of sorted(os.walk(...))
            for name in sorted(files):
                if name.lower().endswith(IMG_EXTENSIONS):
                    samples.append((os.path.join(dirpath, name), label))
    if not samples:
        raise DataError(f"{root} has class folders but no image files "
                        f"({', '.join(IMG_EXTENSIONS)})")
    return list(classes), samples


def read_rgb(path: str) -> Image.Image:
    """An image file as an RGB PIL image (the --decode pil path); an unreadable file is a
    DataError naming it (utils.data.decode words it)."""
    return pil_rgb(path)


def find_image_folder(root: str, split: str) -> str:
    path = os.path.join(root, split)
    if not os.path.isdir(path):
        raise DataError(f"{path} not found: --data must hold train/ and val/ ImageFolder trees "
                        f"(<split>/<class>/<image>)")
    return path



class ImageFiles(torch.utils.data.Dataset):
    """An ImageFolder tree read file by file (ImageNet): item i is (RGB PIL image, label).
    ``classes``: the training split's, to label this split's folders by name."""

    def __init__(self, root: str, classes: Optional[list[str]] = None):
        self.root = root
        self.classes, self.samples = list_image_folder(root, classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        path, label = self.samples[i]
        return read_rgb(path), label

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.samples]

    @classmethod
    def of_samples(cls, root: str, classes: list[str], samples: list) -> "ImageFiles":
        """The files ``samples`` [(path, label)] of ``root``, labelled by ``classes``."""
        files = cls.__new__(cls)
        files.root, files.classes, files.samples = root, list(classes), list(samples)
        return files

    def subset(self, index: Union[torch.Tensor, Sequence[int]]) -> "ImageFiles":
        """The files at ``index`` (a held-out split's, or the rest), with the same classes."""
        return ImageFiles.of_samples(self.root, self.classes,
                                     [self.samples[i] for i in torch.as_tensor(index).tolist()])


class FileItems(torch.utils.data.Dataset):
    """Item i of an ImageFiles tree as ``item(path, label, i)``: the one dataset shell of every
    way the loaders read files (decoded tensors, raw bytes, ...), the reading being ``item``'s
    (a module-level function, so worker processes can take it). A key may also be (epoch, i),
    as the epoch-aware samplers give it."""

    def __init__(self, files: ImageFiles, item: Callable[[str, int, int], Any]):
        self.samples, self.item = files.samples, item

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: Union[int, tuple[int, int]]) -> Any:
        i = key[1] if isinstance(key, tuple) else key
        path, label = self.samples[i]
        return self.item(path, label, i)


# The label file of the official ImageNet distributions' flat val/ (Kaggle's ILSVRC layout):
# ImageId,PredictionString, the wnid first in PredictionString. Looked for beside val/ and in it.
VAL_LABELS = "LOC_val_solution.csv"
MAX_LABEL_FILE = 64 * 2 ** 20  # ImageNet's is 2.5 MB; a larger file is not one


def val_files(root: str, classes: list[str]) -> ImageFiles:
    """root/val labelled by ``classes`` (train/'s folders): an ImageFolder tree of class
    folders, or ImageNet's own flat val/ of images with its label file (``VAL_LABELS``),
    matched to the classes by wnid."""
    folder = os.path.join(root, "val")
    try:
        entries = list(os.scandir(folder))
    except OSError as e:
        raise DataError(f"cannot read {folder}: {e.strerror or e}") from e
    if any(entry.is_dir() for entry in entries):
        return ImageFiles(folder, classes)
    images = {os.path.splitext(e.name)[0]: e.path for e in entries
              if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS)}
    if not images:
        raise DataError(f"{folder} has neither class folders nor image files")
    labels = read_val_labels(_find_label_file(root, folder))
    return ImageFiles.of_samples(folder, classes, _flat_samples(images, labels, classes, folder))


def _find_label_file(root: str, folder: str) -> str:
    for path in (os.path.join(root, VAL_LABELS), os.path.join(folder, VAL_LABELS)):
        if os.path.isfile(path):
            return path
    raise DataError(f"{folder} is a flat folder of images: its labels are needed in "
                    f"{os.path.join(root, VAL_LABELS)} (ImageNet's ImageId,PredictionString "
                    f"file), or put val/ in class folders as train/ is")


def read_val_labels(path: str) -> dict:
    """{ImageId: wnid} of a LOC_val_solution.csv (the first word of each PredictionString;
    a UTF-8 BOM, as spreadsheets save CSV, is read past; an ImageId given two labels is
    refused, never silently relabelled)."""
    if os.path.getsize(path) > MAX_LABEL_FILE:
        raise DataError(f"{path} is {os.path.getsize(path):,} bytes, more than an ImageNet "
                        f"label file holds")
    labels = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's BOM
            rows = csv.reader(f)
            header = next(rows, None)
            if header is None or [h.strip() for h in header[:2]] != ["ImageId",
                                                                    "PredictionString"]:
                raise DataError(f"{path} does not start with ImageId,PredictionString")
            for number, row in enumerate(rows, start=2):
                if len(row) < 2 or not row[0].strip() or not row[1].split():
                    raise DataError(f"{path}, line {number}: not ImageId,PredictionString")
                image, wnid = row[0].strip(), row[1].split()[0]
                if labels.get(image, wnid) != wnid:
                    raise DataError(f"{path}, line {number}: {image} again, labelled {wnid}; "
                                    f"an earlier line labels it {labels[image]}")
                labels[image] = wnid
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path} is not a readable label file: {e}") from e
    return labels


def _flat_samples(images: dict, labels: dict, classes: list[str], folder: str) -> list:
    """[(path, label)] of the flat val/ images, in ImageId order; each bad case one line."""
    missing = sorted(set(labels) - set(images))
    if missing:
        raise DataError(f"the label file names {len(missing)} image(s) {folder} does not hold, "
                        f"e.g. {missing[0]}")
    unlabelled = sorted(set(images) - set(labels))
    if unlabelled:
        raise DataError(f"{images[unlabelled[0]]} has no label in the label file "
                        f"({len(unlabelled)} image(s) without one)")
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({wnid for wnid in labels.values() if wnid not in index})
    if unknown:
        image = next(i for i in sorted(labels) if labels[i] == unknown[0])
        raise DataError(f"the label file labels {image} {unknown[0]}, which is no class of "
                        f"train/ ({len(unknown)} such label(s))")
    return [(images[name], index[labels[name]]) for name in sorted(images)]
