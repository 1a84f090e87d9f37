"""The small datasets of cifar.py (CIFAR-10/100, MNIST, Fashion-MNIST, KMNIST, SVHN):
torchvision's raw files, or an ImageFolder tree (listed by utils.data.image_files), read into
uint8 arrays. Loading into batches lives in loaders.py.

Every small dataset is served CIFAR-shaped, (N, 3, 32, 32) uint8: the 28x28 grey datasets are
zero-padded by 2 pixels (their background is 0) and their channel repeated, so every CIFAR
architecture, its 3-channel stem and its five poolings of VGG apply unchanged.
"""
import os
import shutil
import socket
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..messages import first_line
from .decode import decode_file, read_bytes
from .errors import DataError
from .image_files import class_folders, list_image_folder
from .raw_formats import FormatError, read_cifar_pickle, read_idx, read_mat

__all__ = ["class_count", "is_image_folder", "ArrayDataset", "load_dataset", "dataset_stats", "DATASETS"]

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # the reference's

IDX_FILES = {"train": ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"],
             "test": ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]}

# format: how torchvision's files are laid out; flip: whether a mirrored image is still of
# its class (not for digits and characters).
DATASETS = {
    "cifar10": dict(num_classes=10, format="cifar", folder="cifar-10-batches-py",
                    train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
                    label_key="labels", meta=("batches.meta", "label_names"),
                    torchvision="CIFAR10", flip=True),
    "cifar100": dict(num_classes=100, format="cifar", folder="cifar-100-python", train=["train"],
                     test=["test"], label_key="fine_labels", meta=("meta", "fine_label_names"),
                     torchvision="CIFAR100", flip=True),
    "mnist": dict(num_classes=10, format="idx", folder=os.path.join("MNIST", "raw"),
                  torchvision="MNIST", flip=False),
    "fashionmnist": dict(num_classes=10, format="idx",
                         folder=os.path.join("FashionMNIST", "raw"),
                         torchvision="FashionMNIST", flip=True),
    "kmnist": dict(num_classes=10, format="idx", folder=os.path.join("KMNIST", "raw"),
                   torchvision="KMNIST", flip=False),
    "svhn": dict(num_classes=10, format="mat", folder="", train=["train_32x32.mat"],
                 test=["test_32x32.mat"], torchvision="SVHN", flip=False),
}


class ArrayDataset:
    """Images as one uint8 tensor (N, C, H, W) with int64 labels; small enough to hold whole."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str]):
        self.images, self.labels, self.classes = images, labels, classes

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "ArrayDataset":
        """The images at ``index`` (a held-out split's, or the rest)."""
        return ArrayDataset(self.images[index], self.labels[index], self.classes)


def _read_pickle(path):
    try:
        return read_cifar_pickle(path)
    except Exception as e:
        raise DataError(f"{path} is not a readable CIFAR python batch file: "
                        f"{type(e).__name__}: {e}") from e


def cifar_shaped(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W) or (N, C, H, W) uint8 -> (N, 3, 32, 32): grey repeated, smaller images
    zero-padded equally on each side."""
    if images.ndim == 3:
        images = images[:, None]
    if images.shape[1] == 1:
        images = np.repeat(images, 3, axis=1)
    h, w = images.shape[2:]
    if h > 32 or w > 32:
        raise DataError(f"images of {w}x{h} pixels; the small datasets are at most 32x32")
    top, left = (32 - h) // 2, (32 - w) // 2
    if (h, w) != (32, 32):
        images = np.pad(images, ((0, 0), (0, 0), (top, 32 - h - top), (left, 32 - w - left)))
    return np.ascontiguousarray(images)


def _array_dataset(images, labels, classes, source, num_classes=None):
    """An ArrayDataset of what a file holds, after checking what the model will trust: as many
    labels as images, at least one image, 8-bit pixels (a float 0..1 array would silently become
    0/1 pixels), integer labels in [0, num_classes). ``source`` names the file in errors."""
    images, labels = np.asarray(images), np.asarray(labels).reshape(-1)
    num_classes = len(classes) if num_classes is None else num_classes
    if len(images) == 0:
        raise DataError(f"{source} holds no images")
    if len(labels) != len(images):
        raise DataError(f"{source} holds {len(images)} images but {len(labels)} labels")
    if images.dtype != np.uint8 and not (images.dtype.kind in "iu" and images.min() >= 0
                                         and images.max() <= 255):
        raise DataError(f"{source} holds {images.dtype} pixels from {images.min()} to "
                        f"{images.max()}; expected 8-bit values 0..255")
    if labels.dtype.kind not in "iu" and not (labels.dtype.kind == "f"
                                               and np.array_equal(labels, labels.round())):
        raise DataError(f"{source} holds {labels.dtype} labels; expected class numbers")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(f"{source} holds labels from {labels.min():g} to {labels.max():g}; "
                        f"expected 0..{num_classes - 1} ({num_classes} classes)")
    return ArrayDataset(torch.from_numpy(cifar_shaped(images.astype(np.uint8))),
                        torch.from_numpy(labels.astype(np.int64)), classes)


def _existing(folder, names):
    """Each name in ``folder``, plain or gzipped; DataError naming the first missing."""
    paths = []
    for name in names:
        for candidate in (name, name + ".gz"):
            if os.path.isfile(os.path.join(folder, candidate)):
                paths.append(os.path.join(folder, candidate))
                break
        else:
            raise DataError(f"{folder} is missing {name}")
    return paths


def _read_idx_dataset(folder, spec):
    """MNIST-style IDX files (torchvision's <Name>/raw folder)."""
    def split(which):
        images, labels = _existing(folder, IDX_FILES[which])
        try:
            x, y = read_idx(images), read_idx(labels)
        except (OSError, FormatError, EOFError) as e:
            raise DataError(f"{folder}: {e}") from e
        if x.ndim != 3:
            raise DataError(f"{images}: expected N images of HxW, got an array of {x.shape}")
        return _array_dataset(x, y, [str(i) for i in range(spec["num_classes"])], images)
    return split("train"), split("test")


def _read_mat_dataset(folder, spec):
    """SVHN's train_32x32.mat / test_32x32.mat: X is 32x32x3xN, y is Nx1 with 10 for digit 0."""
    def split(names):
        path, = _existing(folder, names)
        try:
            arrays = read_mat(path)
            x, y = arrays["X"], arrays["y"].reshape(-1)
            x = np.transpose(x, (3, 2, 0, 1))
        except (OSError, FormatError, KeyError, ValueError, zlib.error) as e:
            raise DataError(f"{path} is not an SVHN .mat file with X and y: {e}") from e
        y = np.where(y == 10, 0, y)  # SVHN labels the digit 0 as 10
        return _array_dataset(x, y, [str(i) for i in range(spec["num_classes"])], path)
    return split(spec["train"]), split(spec["test"])


def _read_official(folder, spec):
    """The official python layout, read directly: no md5 check, so mirrors and re-encodings of
    the same arrays load."""
    meta_path = os.path.join(folder, spec["meta"][0])
    classes = None
    if os.path.isfile(meta_path):
        key = spec["meta"][1]
        names = _read_pickle(meta_path).get(key)
        if names is not None:
            if (not isinstance(names, (list, tuple))
                    or not all(isinstance(n, (str, bytes)) for n in names)):
                raise DataError(f"{meta_path} holds {key} of {type(names).__name__}; expected a "
                                f"list of {spec['num_classes']} class names")
            if len(names) != spec["num_classes"]:
                raise DataError(f"{meta_path} names {len(names)} classes in {key}; the data has "
                                f"{spec['num_classes']}")
        classes = [n.decode() if isinstance(n, bytes) else n for n in names or []] or None
    classes = classes or [str(i) for i in range(spec["num_classes"])]

    def split(names):
        parts = []
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                raise DataError(f"{folder} is missing {name}; the official layout has "
                                f"{', '.join(spec['train'] + spec['test'])}")
            batch = _read_pickle(path)
            try:
                data = np.asarray(batch["data"])
                labels = np.asarray(batch[spec["label_key"]])
                if data.shape[1:] not in ((3072,), (3, 32, 32)):
                    raise ValueError(f"its data is an array of shape {data.shape}, not rows of "
                                     f"3072 values (1024 red, 1024 green, 1024 blue: the "
                                     f"official layout) or N x 3 x 32 x 32")
                data = data.reshape(len(data), 3, 32, 32)
            except (KeyError, ValueError, TypeError) as e:
                raise DataError(f"{path} does not hold CIFAR data (N rows of 3072 pixels) and "
                                f"labels: {type(e).__name__}: {e}") from e
            parts.append(_array_dataset(data, labels, classes, path, spec["num_classes"]))
        return ArrayDataset(torch.cat([p.images for p in parts]),
                            torch.cat([p.labels for p in parts]), classes)

    return split(spec["train"]), split(spec["test"])


def _read_image_folder(root, classes=None):
    found, samples = list_image_folder(root, classes)

    def decode(path):  # HWC, as the arrays below are stacked
        return decode_file(read_bytes(path), path).permute(1, 2, 0).numpy()

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        arrays = list(pool.map(decode, [p for p, _ in samples]))
    shape = arrays[0].shape
    for (path, _), a in zip(samples, arrays):
        if a.shape != shape:
            raise DataError(f"images in {root} differ in size: {path} is {a.shape[1]}x"
                            f"{a.shape[0]}, {samples[0][0]} is {shape[1]}x{shape[0]}")
    return _array_dataset(np.stack(arrays).transpose(0, 3, 1, 2),
                          [label for _, label in samples], found, root)


def _download(root, spec):
    import torchvision  # only needed here
    dataset_class = getattr(torchvision.datasets, spec["torchvision"])
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # a network that answers nothing should not hang the run
    try:
        if spec["format"] == "mat":  # torchvision's SVHN class would need scipy to finish
            from torchvision.datasets.utils import download_url
            for split in ("train", "test"):
                url, filename, md5 = dataset_class.split_list[split]
                download_url(url, root, filename, md5)
        else:
            for train in (True, False):
                dataset_class(root, train=train, download=True)
    finally:
        socket.setdefaulttimeout(previous)


READERS = {"cifar": _read_official, "idx": _read_idx_dataset, "mat": _read_mat_dataset}
LAYOUT_NAMES = {"cifar": "{folder}/ (official python layout)",
                "idx": "{folder}/ with torchvision's IDX files",
                "mat": "train_32x32.mat and test_32x32.mat"}


def _has_raw_files(root, spec):
    folder = os.path.join(root, spec["folder"])
    if spec["format"] == "mat":
        return os.path.isfile(os.path.join(folder, spec["train"][0]))
    return os.path.isdir(folder)


def class_count(root: str, name: str = "cifar10") -> int:
    """How many classes a model of dataset ``name``'s data under ``root`` needs, known before
    an image is read: an ImageFolder layout's own (its train/ class folders), else the
    dataset's (raw files, or ones still to download)."""
    if is_image_folder(root, name):
        return len(class_folders(os.path.join(root, "train")))
    return DATASETS[name]["num_classes"]


def is_image_folder(root: str, name: str = "cifar10") -> bool:
    """Whether load_dataset reads ``root`` as an ImageFolder layout (train/ and test/ class
    folders, and none of dataset ``name``'s raw files), not as that dataset."""
    return (not _has_raw_files(root, DATASETS[name]) and os.path.isdir(os.path.join(root, "train"))
            and os.path.isdir(os.path.join(root, "test")))


def load_dataset(root: str, name: str = "cifar10",
                 download: bool = True) -> "tuple[ArrayDataset, ArrayDataset]":
    """(train, test) ArrayDatasets, (N, 3, 32, 32) uint8, of dataset ``name`` under ``root``,
    which may hold
        torchvision's raw files: root/cifar-10-batches-py, root/cifar-100-python,
        root/MNIST/raw (FashionMNIST/raw, KMNIST/raw), root/train_32x32.mat + test_32x32.mat, or
        an ImageFolder layout: root/train/<class>/* and root/test/<class>/*.
    With neither, the raw files are downloaded through torchvision when ``download`` and
    the network allow; otherwise DataError says where it looked and what it accepts."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    spec = DATASETS[name]
    official = os.path.join(root, spec["folder"])
    read = READERS[spec["format"]]
    train_dir, test_dir = os.path.join(root, "train"), os.path.join(root, "test")
    if is_image_folder(root, name):
        train = _read_image_folder(train_dir)
        test = _read_image_folder(test_dir, train.classes)
        return train, test
    if _has_raw_files(root, spec):
        return read(official, spec)
    raw = LAYOUT_NAMES[spec["format"]].format(folder=spec["folder"])
    looked = (f"looked in {os.path.abspath(root)} for {raw} or train/<class>/ + test/<class>/ "
              f"(ImageFolder layout)")
    if not download:
        raise DataError(f"no {name} data found: {looked}; downloading is off (--no-download)")
    made = not os.path.exists(root)
    try:
        os.makedirs(root, exist_ok=True)
        _download(root, spec)
    except Exception as e:
        if made:  # the folder holds only this failed download's partial files
            shutil.rmtree(root, ignore_errors=True)
        reason = first_line(e)
        raise DataError(f"no {name} data found and the download failed ({reason}): {looked}")
    return read(official, spec)


def dataset_stats(name: str, train: "ArrayDataset") -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) for normalisation: the reference's constants for CIFAR, computed
    from the training images for the others."""
    if DATASETS[name]["format"] == "cifar":
        return CIFAR_MEAN, CIFAR_STD
    x = train.images.double() / 255.0
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist())
