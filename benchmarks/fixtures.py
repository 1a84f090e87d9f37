"""Data for the benchmarks, made from the real CIFAR-10 JPEG archive of ../shared (or
$WS_SHARED_DIR): decoded class-balanced prefixes, CIFAR's python layout, and an ImageNet-like
tree of upscaled JPEGs."""
import io
import os
import pickle
import zipfile

import numpy as np

from utils.messages import first_line

__all__ = ["SHARED_NPZ", "require_archive", "real_cifar", "write_cifar_folder",
           "synthetic_imagenet"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("WS_SHARED_DIR", os.path.join(os.path.dirname(REPO), "shared"))
SHARED_NPZ = os.path.join(SHARED, "data", "cifar10-jpeg.npz")


def require_archive(npz: str, what: str) -> None:
    """Exit with one line when the CIFAR-10 archive ``npz`` that ``what`` needs is missing."""
    if not os.path.isfile(npz):
        raise SystemExit(f"error: {what} needs the CIFAR-10 JPEG archive {npz} (--npz PATH)")


# What a file that is not a .npz (a zip archive) is, by its first bytes.
NOT_NPZ = ((b"\x93NUMPY", "one NumPy array (.npy), not named arrays"),
           (b"\x80", "a pickle, which is never unpickled here (it could run code)"))


def real_cifar(npz: str, split: str, count: int) -> tuple:
    """The first ``count`` images of a split of the CIFAR-10 JPEG archive, round-robin over the
    classes (so any prefix is balanced), decoded: (uint8 N x 32 x 32 x 3, labels, class names).
    Nothing in the file is unpickled: a pickle, or a .npz of Python objects, is one line."""
    from PIL import Image
    try:
        with open(npz, "rb") as f:
            head = f.read(6)
        if not head.startswith(b"PK"):
            raise ValueError("it is " + next((what for magic, what in NOT_NPZ
                                              if head.startswith(magic)), "no .npz (zip) archive"))
        archive = np.load(npz, allow_pickle=False)
        with archive:
            jpeg, offsets, labels, classes = (archive[f"{split}_jpeg"],
                                              archive[f"{split}_offsets"],
                                              archive[f"{split}_labels"], archive["classes"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        # numpy's own words for an object array advise allow_pickle=True: never take that here.
        why = ("it holds arrays of Python objects, which are never unpickled here (they could "
               "run code)" if "allow_pickle" in str(e) else first_line(e))
        raise SystemExit(f"error: {npz} is not the CIFAR-10 JPEG archive (arrays {split}_jpeg, "
                         f"{split}_offsets, {split}_labels, classes): {why}") from e
    labels = labels.astype(np.int64)
    per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    order = [i for group in zip(*per_class) for i in group][:count]
    images = np.stack([np.asarray(Image.open(io.BytesIO(
        jpeg[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB")) for i in order])
    return images, labels[order], [str(c) for c in classes]


def write_cifar_folder(npz: str, out: str, train: int, test: int) -> str:
    """``train`` + ``test`` real images in CIFAR-10's official python layout under ``out``."""
    folder = os.path.join(out, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    (x, y, classes), (xt, yt, _) = real_cifar(npz, "train", train), real_cifar(npz, "test", test)
    parts = np.array_split(np.arange(len(y)), 5)
    batches = [(f"data_batch_{b + 1}", x[p], y[p]) for b, p in enumerate(parts)]
    for name, images, labels in batches + [("test_batch", xt, yt)]:
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump({"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
                         "labels": labels.tolist()}, f)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": classes}, f)
    return out


def synthetic_imagenet(npz: str, out: str, count: int, size: tuple = (500, 375)) -> str:
    """An ImageNet-like tree under ``out`` (train/ and val/, 10 classes) of ``count`` real
    CIFAR-10 images upscaled to ``size`` (ImageNet's typical 500x375) and saved as JPEG q90:
    decoding and resizing cost what they cost on ImageNet, though smooth upscaled pictures
    decode somewhat faster than photographs."""
    from PIL import Image
    # Both splits take the archive's images round-robin over the classes, so val/'s images
    # (half as many, at least 10) are of classes train/ has.
    for split, n in (("train", count), ("val", min(count, max(10, count // 2)))):
        images, labels, classes = real_cifar(npz, "train" if split == "train" else "test", n)
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = os.path.join(out, split, classes[label])
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(image).resize(size, Image.BICUBIC).save(
                os.path.join(folder, f"{i}.jpg"), quality=90)
    return out
