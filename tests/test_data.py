"""The small datasets of cifar.py in torchvision's raw layouts and as image folders, served
CIFAR-shaped (N, 3, 32, 32)."""
import os

import numpy as np
import pytest
import torch

import cifar
from builders import (make_cifar_pickles, make_idx_dataset, make_image_folder, make_svhn,
                      read_log_rows, write_mat)
from utils.data.datasets import dataset_stats, load_dataset
from utils.data.errors import DataError
from utils.data.raw_formats import FormatError, read_idx, read_mat


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST"),
                                          ("kmnist", "KMNIST")])
@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
def test_idx_datasets_load_padded_and_grey_repeated(tmp_path, name, folder, gz):
    root = make_idx_dataset(str(tmp_path), folder, n_train=12, n_test=5, gz=gz)
    raw = read_idx(os.path.join(root, folder, "raw", "train-images-idx3-ubyte" +
                                (".gz" if gz else "")))
    train, test = load_dataset(root, name, download=False)
    assert train.images.shape == (12, 3, 32, 32) and test.images.shape == (5, 3, 32, 32)
    assert train.images.dtype == torch.uint8
    # The 28x28 image sits in the middle, a 2-pixel zero border around it, in all 3 channels.
    assert torch.equal(train.images[:, 0, 2:30, 2:30], torch.from_numpy(raw))
    assert torch.equal(train.images[:, 1], train.images[:, 0])
    assert train.images[:, :, :2].sum() == 0 and train.images[:, :, :, 30:].sum() == 0
    assert train.labels.tolist() == [i % 10 for i in range(12)]


def test_a_gzipped_idx_is_expanded_no_further_than_its_header_promises(tmp_path):
    """A 4-value header over 64 MiB of zeros that gzip holds in 64 KiB: refused having read
    only what the header declares and one byte more."""
    import gzip
    import struct
    import tracemalloc
    path = str(tmp_path / "labels-idx1-ubyte.gz")
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 0x08, 1, 4))
        for _ in range(64):
            f.write(bytes(2 ** 20))
    tracemalloc.start()
    with pytest.raises(FormatError, match="says 4 values of 1 bytes .4 bytes., the file holds "
                                          "more than 4 after the header"):
        read_idx(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * 2 ** 20, f"{peak:,} bytes held while refusing"


def test_a_plain_idx_promising_more_than_it_holds_is_refused_before_reading(tmp_path):
    import struct
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(struct.pack(">BBBB3I", 0, 0, 0x08, 3, 60000, 1000, 1000) + bytes(10))
    with pytest.raises(FormatError, match=r"\(60,000,000,000 bytes\), the file holds 10 after"):
        read_idx(str(path))


def test_idx_and_pickle_readers_refuse_what_is_not_a_regular_file(tmp_path):
    from utils.files import NotRegularFile
    from utils.data.raw_formats import read_cifar_pickle
    fifo = str(tmp_path / "train-labels-idx1-ubyte")
    os.mkfifo(fifo)  # opened for reading, a FIFO would wait for a writer for ever
    for read in (read_idx, read_mat, read_cifar_pickle):
        with pytest.raises(NotRegularFile, match="is not a regular file .a FIFO, device or"):
            read(fifo)
    with pytest.raises(NotRegularFile):
        read_idx("/dev/zero")


def test_a_corrupt_gzip_idx_is_a_format_error(tmp_path):
    import gzip
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    good = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 200]) + bytes(200))
    path.write_bytes(good[:20] + b"\xff" * 20 + good[40:])
    with pytest.raises((FormatError, OSError, EOFError)):
        read_idx(str(path))


def test_svhn_mat_files_load_with_label_10_as_digit_0(tmp_path):
    root = make_svhn(str(tmp_path), n_train=12, n_test=5)
    arrays = read_mat(os.path.join(root, "train_32x32.mat"))
    assert arrays["X"].shape == (32, 32, 3, 12)
    train, test = load_dataset(root, "svhn", download=False)
    assert train.images.shape == (12, 3, 32, 32) and len(test) == 5  # test file is compressed
    # Image 0, channel 1, pixel (row 3, col 7) is X[3, 7, 1, 0] in MATLAB's layout.
    assert train.images[0, 1, 3, 7] == arrays["X"][3, 7, 1, 0]
    assert train.labels.tolist()[:10] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]


def test_mat_reader_keeps_matlab_column_major_order(tmp_path):
    a = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    write_mat(str(tmp_path / "a.mat"), {"a": a}, compress=True)
    assert np.array_equal(read_mat(str(tmp_path / "a.mat"))["a"], a)


def test_grey_image_folder_is_served_like_the_raw_files(tmp_path):
    root = make_image_folder(str(tmp_path), splits=(("train", 3), ("test", 2)),
                             classes=[str(i) for i in range(10)], size=(28, 28))
    train, test = load_dataset(root, "mnist", download=False)
    assert train.images.shape == (30, 3, 32, 32) and len(train.classes) == 10


def test_stats_are_the_references_for_cifar_and_measured_otherwise(tmp_path):
    root = make_idx_dataset(str(tmp_path), "MNIST", n_train=12, n_test=5)
    train, _ = load_dataset(root, "mnist", download=False)
    mean, std = dataset_stats("mnist", train)
    assert mean[0] == pytest.approx(train.images[:, 0].double().mean().item() / 255)
    assert dataset_stats("cifar10", train)[0] == (0.4914, 0.4822, 0.4465)


def test_missing_and_broken_files_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="MNIST/raw/ with torchvision's IDX files"):
        load_dataset(str(tmp_path), "mnist", download=False)
    (tmp_path / "train_32x32.mat").write_bytes(b"not a mat file")
    (tmp_path / "test_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="not an SVHN .mat file"):
        load_dataset(str(tmp_path), "svhn", download=False)


@pytest.mark.parametrize("name", ["mnist", "svhn"])
def test_cifar_py_trains_on_other_datasets(tmp_path, name):
    root = str(tmp_path / "data")
    os.makedirs(root)
    make_idx_dataset(root, "MNIST", 32, 10) if name == "mnist" else make_svhn(root, 32, 10)
    run = str(tmp_path / "run")
    cifar.main(["-d", name, "--data", root, "-a", "l_resnet", "--depth", "8", "--epochs", "1",
                "--train-batch", "16", "--no-progress", "-c", run, "--manualSeed", "1"])
    _, rows = read_log_rows(os.path.join(run, "log.txt"))
    assert len(rows) == 1 and 0 <= rows[0][4] <= 100


class _RunsCode:
    """Unpickling this calls os.mkdir(path): what a hostile "CIFAR mirror" could put in a batch."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


@pytest.mark.parametrize("victim", ["data_batch_3", "batches.meta"])
def test_a_malicious_cifar_pickle_runs_nothing_and_is_named(tmp_path, victim):
    import pickle
    root = make_cifar_pickles(str(tmp_path / "data"), n_train=10, n_test=5)
    marker = tmp_path / "code-ran"
    path = os.path.join(root, "cifar-10-batches-py", victim)
    with open(path, "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1],
                     "label_names": _RunsCode(str(marker))}, f)
    with pytest.raises(DataError, match=f"{victim} is not a readable CIFAR.*refused to load "
                                        f"posix.mkdir"):
        load_dataset(root, download=False)
    assert not marker.exists()


def test_python2_style_cifar_batches_load(tmp_path):
    """The official files: protocol 2, bytes keys and bytes class names, as Python 2 wrote them."""
    import pickle
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    pixels = np.arange(3 * 3072, dtype=np.uint8).reshape(3, 3072)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": b"a batch", b"labels": [0, 1, 2], b"data": pixels,
                         b"filenames": [b"a.png", b"b.png", b"c.png"]}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)],
                     b"num_vis": 3072}, f, protocol=2)
    train, test = load_dataset(str(tmp_path), download=False)
    assert train.images.shape == (15, 3, 32, 32) and train.classes[3] == "c3"
    assert torch.equal(train.images[1].flatten(), torch.from_numpy(pixels[1]))


def test_the_shared_archives_pickle_layout_loads(tmp_path, cifar_npz):
    import subprocess
    import sys
    script = os.path.join(os.path.dirname(cifar_npz), "cifar10_jpeg.py")
    subprocess.run([sys.executable, script, "pickle", str(tmp_path), "--train", "50", "--test",
                    "20"], check=True, capture_output=True)
    train, test = load_dataset(str(tmp_path), download=False)
    assert len(train) == 50 and len(test) == 20 and train.classes[0] == "airplane"
