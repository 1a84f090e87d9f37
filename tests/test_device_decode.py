"""imagenet.py --decode device: JPEG bytes decoded, cropped and normalised on the training device,
matching the PIL path's pictures and its per-image seeded draws."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

import imagenet
from builders import read_log_rows
from utils.settings.values import IMAGENET_MEAN, IMAGENET_STD
from utils.data.image_files import ImageFiles
from utils.data.device_decode import DeviceDecodeLoader, DeviceView
from utils.data.loaders import BatchFormat, EpochBatches
from utils.data.workers import Workers
from utils.settings.values import AugmentPolicy
from utils.session.stages import read_settings


@pytest.fixture(scope="module")
def smooth_tree(tmp_path_factory):
    """Smooth colour gradients (where decoders and resamplers agree closely), JPEG and one PNG."""
    root = str(tmp_path_factory.mktemp("smooth"))
    for split, n in (("train", 3), ("val", 2)):
        for c, cls in enumerate(("a", "b")):
            os.makedirs(os.path.join(root, split, cls))
            for i in range(n):
                h, w = (300, 400) if i % 2 else (280, 260)
                yy, xx = np.mgrid[0:h, 0:w]
                image = np.stack([xx * 255 / w, yy * 255 / h,
                                  np.full_like(xx, 60 * (c + i), dtype=float)], -1)
                ext = "png" if (split, cls, i) == ("train", "b", 0) else "jpg"
                Image.fromarray(image.astype(np.uint8)).save(
                    os.path.join(root, split, cls, f"{i}.{ext}"), quality=95)
    return root


def batches_of(loader):
    return torch.cat([x for x, _ in loader])


def imagenet_py_loaders(root, decode, batch, epoch):
    """imagenet.py's own (train, val) loaders for --decode ``decode``, at ``epoch``."""
    settings, _ = read_settings(imagenet.imagenet_flags(), 
        ["--data", root, "--train-batch", str(batch), "--test-batch", str(batch), "--decode",
         decode, "-j", "0"])
    _, loaders = imagenet.imagenet_loaders(settings.data, torch.device("cpu"), 5, False)
    train, val = loaders.train, loaders.test
    train.set_epoch(epoch)
    return train, val


def test_val_batches_match_the_pil_path(smooth_tree):
    _, device = imagenet_py_loaders(smooth_tree, "device", 3, epoch=0)
    _, pil = imagenet_py_loaders(smooth_tree, "pil", 3, epoch=0)
    a, b = batches_of(device), batches_of(pil)
    assert a.shape == b.shape == (4, 3, 224, 224)
    # Normalised units: 0.05 is about 3 grey levels out of 255.
    assert (a - b).abs().mean() < 0.05


def test_train_crops_are_drawn_per_image_not_per_batch(smooth_tree):
    files = ImageFiles(os.path.join(smooth_tree, "train"))
    views = []
    for batch in (2, 6):
        plan = EpochBatches(len(files), batch, shuffle=True, seed=5)
        plan.set_epoch(3)
        loader = DeviceDecodeLoader(files, plan, "cpu", BatchFormat(IMAGENET_MEAN, IMAGENET_STD),
                                    DeviceView(train=True), workers=Workers(0))
        views.append(batches_of(loader))
    assert views[0].shape == (6, 3, 224, 224)  # the PNG among them decoded too
    torch.testing.assert_close(views[0], views[1])
    plan.set_epoch(4)
    assert not torch.allclose(batches_of(loader), views[1])  # a new epoch, new crops


def test_a_policy_is_drawn_per_image_on_the_decoded_crops(smooth_tree):
    files = ImageFiles(os.path.join(smooth_tree, "train"))
    policy = AugmentPolicy("randaugment", num_ops=2, magnitude=20)
    views = {}
    for batch, chosen in ((2, policy), (6, policy), (6, AugmentPolicy())):
        plan = EpochBatches(len(files), batch, shuffle=True, seed=5)
        plan.set_epoch(3)
        loader = DeviceDecodeLoader(files, plan, "cpu", BatchFormat(IMAGENET_MEAN, IMAGENET_STD),
                                    DeviceView(train=True, policy=chosen), workers=Workers(0))
        views[batch, chosen.enabled] = batches_of(loader)
    torch.testing.assert_close(views[2, True], views[6, True])
    assert not torch.allclose(views[6, True], views[6, False])


def test_train_batches_take_the_pil_paths_crops_and_flips(smooth_tree):
    device, _ = imagenet_py_loaders(smooth_tree, "device", 6, epoch=2)
    pil, _ = imagenet_py_loaders(smooth_tree, "pil", 6, epoch=2)
    a, b = batches_of(device), batches_of(pil)
    # The same box and mirror per image: only decoder and resampler differ (as for val).
    assert (a - b).abs().mean() < 0.05
    assert (a - b.flip(-1)).abs().mean() > 0.1  # the mirrors matter: a flip would be caught


def test_imagenet_py_trains_with_device_decoding(smooth_tree, tmp_path):
    run = str(tmp_path / "run")
    imagenet.main(["-a", "l_resnet18", "--data", smooth_tree, "--decode", "device", "--epochs",
                   "1", "-j", "1", "--train-batch", "3", "--test-batch", "4", "-c", run,
                   "--no-progress", "--manualSeed", "1"])
    _, rows = read_log_rows(os.path.join(run, "log.txt"))
    assert len(rows) == 1


@pytest.mark.parametrize("train", [True, False], ids=["train", "val"])
def test_only_the_crop_becomes_float_not_the_whole_image(smooth_tree, monkeypatch, train):
    """A large photograph is cropped as uint8; converting it whole to float first would take
    4 bytes a pixel (a 225-megapixel image: 2.7 GB) for pixels the crop throws away."""
    import torchvision.transforms.v2.functional as TF
    files = ImageFiles(os.path.join(smooth_tree, "train"))
    plan = EpochBatches(len(files), 2, shuffle=True, seed=5)
    loader = DeviceDecodeLoader(files, plan, "cpu", BatchFormat(IMAGENET_MEAN, IMAGENET_STD),
                                DeviceView(train=train), workers=Workers(0))
    resized = []
    real_resize = TF.resize

    def recording(image, *args, **kwargs):
        resized.append((image.dtype, tuple(image.shape)))
        return real_resize(image, *args, **kwargs)
    monkeypatch.setattr(TF, "resize", recording)
    big = torch.randint(0, 256, (3, 1200, 1600), dtype=torch.uint8)
    view = loader.view(big, 0)
    assert view.shape == (3, 224, 224) and view.dtype == torch.float32
    (dtype, shape), = resized
    assert dtype == torch.float32 and shape[1] * shape[2] < 1200 * 1600
