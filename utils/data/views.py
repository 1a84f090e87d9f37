"""The ImageNet views of a decoded image, on uint8 tensors: the training crop (RandomResizedCrop
224 + horizontal flip) and the evaluation crop (the centre of Resize(256) + CenterCrop(224)).

The draws are torchvision's own calls, in the PIL path's order (``crop_and_flip``), so every path
(PIL, these tensors, ``--decode device``) takes the same box and mirror of an image from the
seeded generator. The pixels are resampled differently: PIL's bilinear filter on PIL images
there, torch's antialiased bilinear filter here (docs/layout.md: how far apart they are).

The evaluation view resamples only the centre box, in one resize, where torchvision's
Resize(256) + CenterCrop(224) resamples the whole image and then throws most of it away: the box
is the one CenterCrop cuts, mapped back onto the original image (``centre_box``).

A view returns (H, W, C) uint8 (a view of channels-last memory: the collate makes the one copy
into the batch), so batches collate as NHWC, and the device puts them in the model's layout
(utils.data.loaders.Normalize).
"""
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
import torchvision.transforms as T

__all__ = ["SIZE", "RESIZE", "SCALE", "RATIO", "Box", "Crop", "crop_and_flip", "centre_box",
           "resized_box", "TrainView", "ValView"]

SIZE = 224  # the side of every view, training and evaluation
RESIZE = 256  # evaluation: the shorter side Resize() gives before CenterCrop(SIZE)
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)  # RandomResizedCrop's defaults


class Box(NamedTuple):
    """A box of an image, in pixels."""
    top: int
    left: int
    height: int
    width: int


class Crop(NamedTuple):
    """A training view's box, and whether it is mirrored."""
    top: int
    left: int
    height: int
    width: int
    flip: bool


def crop_and_flip(image: torch.Tensor) -> Crop:
    """(top, left, height, width, flip) for ``image`` (C, H, W), drawn from the global CPU
    generator as RandomResizedCrop(224) then RandomHorizontalFlip draw them."""
    top, left, h, w = T.RandomResizedCrop.get_params(image, scale=SCALE, ratio=RATIO)
    return Crop(top, left, h, w, bool(torch.rand(1) < 0.5))


def centre_box(height: int, width: int, resize: int = RESIZE, size: int = SIZE) -> Box:
    """(top, left, height, width) of the original image that Resize(``resize``) (of the shorter
    side) + CenterCrop(``size``) shows: torchvision's resized size and crop offsets, mapped back
    through each axis's scale and rounded to whole pixels, at least one of each."""
    if height <= width:
        resized = (resize, int(resize * width / height))
    else:
        resized = (int(resize * height / width), resize)
    box = []
    for original, scaled in zip((height, width), resized):
        start = int(round((scaled - size) / 2.0))  # CenterCrop's offset
        first, last = (round(edge * original / scaled) for edge in (start, start + size))
        # At least one pixel: on a sliver (1 x 5000) the crop maps back to under half a pixel.
        first = min(first, original - 1)
        box.append((first, max(1, last - first)))
    (top, box_h), (left, box_w) = box
    return Box(top, left, box_h, box_w)


def _as_nhwc(image: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) in channels-last memory, a view where ``image`` (C, H, W) already is (as
    torchcodec's images are): torch's uint8 antialiased resize is two to three times faster
    there than on NCHW, and gives channels-last output that the collate copies as a block.

    The batch dimension gets the stride of a whole image. ``unsqueeze(0)`` would give it the
    stride 3; torch then still calls the tensor channels-last, but the resize does not, and it
    returned NCHW output, which made a transposing copy in the collate: 0.4 ms per image for
    the resize and that copy, against 0.17 ms (pixels alike)."""
    hwc = image.permute(1, 2, 0).contiguous()
    return hwc.unsqueeze(0).permute(0, 3, 1, 2)


def resized_box(image: torch.Tensor, box: Box, size: int,
                interpolation: str = "bilinear") -> torch.Tensor:
    """The ``box`` of a (1, C, H, W) channels-last uint8 image resized to ``size`` x ``size``
    with the antialiased ``interpolation`` filter (torchvision's resized_crop, the same
    pixels), staying channels-last: no layout conversion on the way in or out."""
    top, left, height, width = box
    crop = image[:, :, top:top + height, left:left + width]
    return F.interpolate(crop, size=(size, size), mode=interpolation, antialias=True,
                         align_corners=False)


def _hwc(batch_of_one: torch.Tensor) -> torch.Tensor:
    """(H, W, C): of channels-last memory, a view; the collate makes the one copy."""
    return batch_of_one[0].permute(1, 2, 0)


class TrainView:
    """RandomResizedCrop(``size``, ``interpolation``) + horizontal flip (+ ``policy``, a
    torchvision transform on uint8 tensors) of a (C, H, W) uint8 image; call it under
    utils.seeding.image_rng."""
    random = True

    def __init__(self, size: int = SIZE, policy: Optional[object] = None,
                 interpolation: str = "bilinear"):
        self.size, self.policy, self.interpolation = size, policy, interpolation

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        top, left, h, w, flip = crop_and_flip(image)
        x = resized_box(_as_nhwc(image), Box(top, left, h, w), self.size, self.interpolation)
        if self.policy is not None:
            if flip:  # the policy sees the mirrored image, as after RandomHorizontalFlip
                x = x.flip(-1)
                flip = False
            x = _as_nhwc(self.policy(x[0]))
        view = _hwc(x)
        return view.flip(1) if flip else view


class ValView:
    """The centre crop of Resize(``resize``) + CenterCrop(``size``), as one resize (with
    ``interpolation``) of the box it shows."""
    random = False

    def __init__(self, size: int = SIZE, resize: int = RESIZE, interpolation: str = "bilinear"):
        self.size, self.resize, self.interpolation = size, resize, interpolation

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        box = centre_box(image.shape[-2], image.shape[-1], self.resize, self.size)
        return _hwc(resized_box(_as_nhwc(image), box, self.size, self.interpolation))
