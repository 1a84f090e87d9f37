"""An ImageFolder tree read file by file (imagenet.py, and a held-out part of it): ``ImageFiles``
lists the files and labels; ``FileItems`` is the one dataset shell every loader reads them
through, with its own item function (decoded tensors, raw bytes, ...). ``val_files`` also reads
ImageNet's own flat val/ with its label file."""
import csv
import os
from typing import Any, Callable, Optional, Sequence, Union

import torch
from PIL import Image

from .datasets import IMG_EXTENSIONS, list_image_folder, read_rgb
from .errors import DataError

__all__ = ["ImageFiles", "FileItems", "VAL_LABELS", "val_files", "read_val_labels"]


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

    def subset(self, index: Sequence[int]) -> "ImageFiles":
        """The files at ``index`` (a held-out split's, or the rest), with the same classes."""
        return ImageFiles.of_samples(self.root, self.classes, [self.samples[i] for i in index])


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
