"""The batch pipeline: draws depend on (seed, epoch, image) only; the batched crop/flip equals
the per-image definition; normalisation matches torchvision's."""
import torch
import torch.nn.functional as F

from builders import random_images
from utils.data.loaders import BatchFormat, CropFlip, DeviceLoader, EpochBatches, crop_flip


def images_by_index(batch_size, epoch=1, seed=7):
    data = random_images(20)
    loader = DeviceLoader(data, EpochBatches(len(data), batch_size, True, seed), "cpu",
                          BatchFormat((0.5,) * 3, (0.25,) * 3), CropFlip())
    loader.set_epoch(epoch)
    idx = torch.cat(list(loader.batches))
    x = torch.cat([b for b, _ in loader])
    return idx, x


def test_draws_do_not_depend_on_batch_size():
    idx_a, xa = images_by_index(3)
    idx_b, xb = images_by_index(8)
    assert torch.equal(idx_a, idx_b) and torch.equal(xa, xb)


def test_epochs_and_seeds_differ():
    idx1, x1 = images_by_index(4, epoch=1)
    idx2, x2 = images_by_index(4, epoch=2)
    idx3, _ = images_by_index(4, epoch=1, seed=8)
    assert not torch.equal(idx1, idx2) and not torch.equal(idx1, idx3)


def test_shards_of_a_batch_cover_it_once():
    whole = list(EpochBatches(23, 8, True, seed=1))
    shards = [list(EpochBatches(23, 8, True, seed=1, rank=r, world=3)) for r in range(3)]
    for b, batch in enumerate(whole):
        assert torch.equal(torch.cat([shards[r][b] for r in range(3)]), batch)


def test_crop_flip_equals_pad_crop_mirror():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    dx, dy = torch.tensor([0, 4, 2, 1]), torch.tensor([1, 4, 0, 3])
    flip = torch.tensor([False, True, True, False])
    out = crop_flip(x, dx, dy, flip, pad=2)
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(4):
        ref = padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8]
        assert torch.equal(out[i], ref.flip(2) if flip[i] else ref)


def test_normalisation_matches_torchvision():
    import torchvision.transforms.functional as TF
    data = random_images(4)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    loader = DeviceLoader(data, EpochBatches(4, 4, False), "cpu",
                          BatchFormat(mean, std, channels_last=True))
    x, y = next(iter(loader))
    ref = TF.normalize(data.images.float() / 255, mean, std)
    torch.testing.assert_close(x, ref)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, data.labels)
