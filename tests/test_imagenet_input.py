"""Specification of imagenet.py's input paths (utils/data/folder_loaders.py, views.py, seeding.py):
the draws are what they were, --decode pil is the reference's pipeline pixel for pixel, the
default tensor path stays within the difference docs/layout.md states, and the loaders' defaults."""
import contextlib
import os
import warnings

import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms as T
from PIL import Image

import imagenet
import utils.data.loaders
import utils.data.workers
from utils.settings.values import IMAGENET_MEAN, IMAGENET_STD
from utils.data.views import centre_box
from utils.seeding import AUGMENT, image_rng, mixed_seed
from utils.session.stages import read_settings


@contextlib.contextmanager
def seeded_as_before(seed, epoch, index):
    """The per-image seeding before it was made cheap: every device's generator forked and
    torch.manual_seed (which also seeds CUDA's)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(mixed_seed(seed, epoch, AUGMENT, index))
        yield


def draws(context):
    image = torch.zeros(3, 375, 500)
    out = []
    for index in range(20):
        with context(7, 3, index):
            out.append((T.RandomResizedCrop.get_params(image, (0.08, 1.0), (3 / 4, 4 / 3)),
                        float(torch.rand(1)), int(torch.randint(0, 14, (1,)))))
    return out


def test_cheap_seeding_draws_what_the_old_seeding_drew():
    assert draws(image_rng) == draws(seeded_as_before)


def test_image_seeding_touches_only_the_cpu_generator_and_restores_it(monkeypatch):
    def refuse(*args):
        raise AssertionError("seeded a CUDA generator")
    monkeypatch.setattr(torch.cuda, "manual_seed_all", refuse)
    monkeypatch.setattr(torch.cuda, "manual_seed", refuse)
    torch.default_generator.manual_seed(123)
    expected = torch.rand(3)
    torch.default_generator.manual_seed(123)
    with image_rng(1, 2, 3):
        torch.rand(5)
    assert torch.equal(torch.rand(3), expected)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """ImageNet-sized JPEGs (q90) of smooth, textured pictures: random 32x32 colours upscaled
    bicubically to 500x375 (portrait and landscape), as bench.py makes from CIFAR-10."""
    root = str(tmp_path_factory.mktemp("photos"))
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 3)):
        for cls in ("a", "b"):
            os.makedirs(os.path.join(root, split, cls))
            for i in range(n):
                size = (500, 375) if i % 2 == 0 else (375, 500)
                small = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
                small.resize(size, Image.BICUBIC).save(os.path.join(root, split, cls,
                                                                   f"{i}.jpg"), quality=90)
    return root


def loaders(root, decode, workers=0):
    settings, _ = read_settings(imagenet.imagenet_flags(), ["--data", root, "--decode", decode, "-j",
                                                   str(workers), "--train-batch", "4",
                                                   "--test-batch", "4"])
    return imagenet.imagenet_loaders(settings.data, torch.device("cpu"), 5, False)[1]


def items(loader, epoch=2):
    """The uint8 images of a StreamLoader's dataset, as its workers make them, (C, H, W)."""
    dataset = loader.loader.dataset
    out = []
    for i in range(len(dataset)):
        image = dataset[(epoch, i)][0]
        out.append(image.permute(2, 0, 1) if image.shape[-1] == 3 else image)
    return torch.stack(out)


def test_decode_pil_is_the_reference_pipeline_pixel_for_pixel(photos):
    """torchvision's ImageFolder with the reference's transforms, each image drawing from the
    same per-image seed: the same uint8 pixels, and the same normalised batch."""
    ours = loaders(photos, "pil")
    for loader, split, views in (
            (ours.train, "train", [T.RandomResizedCrop(224), T.RandomHorizontalFlip()]),
            (ours.test, "val", [T.Resize(256), T.CenterCrop(224)])):
        folder = torchvision.datasets.ImageFolder(os.path.join(photos, split),
                                                  T.Compose(views + [T.PILToTensor()]))
        reference = []
        for i in range(len(folder)):
            with image_rng(5, 2, i):
                reference.append(folder[i][0])
        assert torch.equal(items(loader), torch.stack(reference)), split
    normalise = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    x = items(ours.test)
    torch.testing.assert_close(ours.test.normalize(x), normalise(x.float() / 255), rtol=0,
                               atol=2e-6)


def test_the_default_path_is_within_the_stated_difference_of_pil(photos):
    """docs/layout.md's numbers for these pictures (upscaled colour noise, the harder of its two
    measurements): train crops at most 1 grey level apart, mean 0.002; val mean 2.2, at most
    16, 0.8% beyond 8. Bounds a little above."""
    default, pil = loaders(photos, "cpu"), loaders(photos, "pil")
    train = (items(default.train).int() - items(pil.train).int()).abs().float()
    assert train.max() <= 2 and train.mean() < 0.05
    val = (items(default.test).int() - items(pil.test).int()).abs().float()
    assert val.mean() < 3.0 and val.max() <= 24 and (val > 8).float().mean() < 0.02
    assert (items(default.train).int() - items(pil.train).flip(-1).int()).abs().float().mean() > 5


@pytest.mark.parametrize("height, width, box", [
    # Resize(256) makes 375x500 256x341, CenterCrop(224) cuts rows 16-240, columns 58-282:
    # in the original rows 23.4-351.6 and columns 85.0-413.5.
    (375, 500, (23, 85, 329, 328)), (500, 375, (85, 23, 328, 329)),
    (256, 256, (16, 16, 224, 224)),
    (224, 300, (14, 52, 196, 196)),  # smaller than 256: Resize enlarges, the box is smaller
])
def test_the_centre_box_is_what_resize_and_centre_crop_show(height, width, box):
    assert centre_box(height, width) == box


@pytest.mark.parametrize("height, width", [(1, 5000), (5000, 1), (2, 9000)])
def test_a_sliver_of_an_image_still_has_a_centre_view(height, width):
    """A valid 1 x 5000 image: the centre crop maps back to under half a pixel, which rounded
    to an empty box (and crashed evaluation after a whole epoch); it keeps one pixel."""
    from utils.data.views import ValView
    box = centre_box(height, width)
    assert box.height >= 1 and box.width >= 1
    assert 0 <= box.top < height and 0 <= box.left < width
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    view = ValView()(image)
    assert tuple(view.shape) in ((3, 224, 224), (224, 224, 3))


@pytest.mark.parametrize("flag", ["--train-crop-size", "--val-resize-size", "--val-crop-size"])
def test_a_size_flag_past_what_any_memory_serves_is_one_line(flag, capsys):
    from builders import one_line_failure
    code, line = one_line_failure(imagenet.main, ["--data", "d", flag, "100000"], capsys)
    assert code == 2 and line == f"error: {flag} must be at most 4,096, got 100,000"


def test_the_evaluation_view_is_not_seeded(photos, monkeypatch):
    default = loaders(photos, "cpu")

    def refuse(*args):
        raise AssertionError("seeded for a view that draws nothing")
    monkeypatch.setattr(utils.data.loaders, "image_rng", refuse)
    assert items(default.test).shape == (6, 3, 224, 224)
    with pytest.raises(AssertionError, match="seeded"):
        items(default.train)


def test_batches_collate_as_nhwc_and_reach_the_model_in_its_layout(photos):
    default = loaders(photos, "cpu")
    x, _ = next(iter(default.train))
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 and x.is_contiguous()
    settings, _ = read_settings(imagenet.imagenet_flags(), ["--data", photos, "-j", "0"])
    channels_last = imagenet.imagenet_loaders(settings.data, torch.device("cpu"), 5, True)[1]
    x, _ = next(iter(channels_last.test))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_only_the_training_loader_keeps_its_workers_and_each_holds_two_batches(photos):
    for decode in ("cpu", "pil", "device"):
        both = loaders(photos, decode, workers=2)
        train, test = both.train.loader, both.test.loader
        assert train.persistent_workers and not test.persistent_workers, decode
        assert train.prefetch_factor == test.prefetch_factor == 2, decode


def test_no_deprecation_warning_from_our_decoding(photos):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for decode in ("cpu", "pil", "device"):
            both = loaders(photos, decode)
            for loader in (both.train, both.test):
                assert sum(x.shape[0] for x, _ in loader) in (8, 6)


def test_batches_are_normalised_on_one_thread_while_workers_decode_on_the_cpu(photos):
    """The workers fill the cores: the main process normalises each batch on one intra-op
    thread, and the code that consumes the batches (a CPU training step) keeps its own
    threads; without workers the main process normalises on all of them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for workers, normalising in ((2, 1), (0, 2)):
            loader = loaders(photos, "cpu", workers).train
            seen, normalize = [], loader.normalize

            def spy(x):
                seen.append(torch.get_num_threads())
                return normalize(x)
            loader.normalize = spy
            loader.set_epoch(0)
            consuming = [torch.get_num_threads() for _ in loader]
            utils.data.workers.stop_workers(loader.loader)
            assert seen == [normalising] * 2 and consuming == [2] * 2, workers
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("layout", ["hwc", "chw"])  # torchcodec's memory; PIL's, once permuted
def test_each_view_is_an_hwc_block_with_torchvisions_pixels(layout):
    """A view's image is one contiguous (H, W, C) block, which the collate copies whole (an
    NCHW resize output made that copy a transposing one, 0.15 ms an image), and its pixels
    are torchvision's resized_crop of the box drawn, mirrored where drawn."""
    import torchvision.transforms.v2.functional as TF
    from utils.data.views import TrainView, ValView, crop_and_flip
    hwc = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (375, 500, 3),
                                                             dtype=np.uint8))
    image = hwc.permute(2, 0, 1)
    if layout == "chw":
        image = image.contiguous()
    with image_rng(1, 0, 5):
        top, left, h, w, flip = crop_and_flip(image)
    expected = TF.resized_crop(image, top, left, h, w, [224, 224], antialias=True)
    expected = (TF.horizontal_flip(expected) if flip else expected).permute(1, 2, 0)
    with image_rng(1, 0, 5):
        view = TrainView()(image)
    assert view.is_contiguous() and view.shape == (224, 224, 3)
    assert torch.equal(view, expected)
    top, left, h, w = centre_box(375, 500)
    val = ValView()(image)
    assert val.is_contiguous()
    assert torch.equal(val, TF.resized_crop(image, top, left, h, w, [224, 224],
                                            antialias=True).permute(1, 2, 0))
