"""torchvision's uint8 image ops (torchvision.transforms.functional on tensors), batched with one
parameter per image: the ops of the AutoAugment family, applied on the training device.

Each function takes a uint8 batch (B, C, H, W), C = 3, and per-image parameters (B,), and gives
image i what torchvision's op gives it with parameter i, in the same float32 arithmetic and the
same casts back to uint8. The ops fall into three kinds, and each kind is one computation over
the whole batch, so an image whose op is of another kind passes through unchanged:

- Geometric (shear, translate, rotate): torchvision's inverse affine matrix per image
  (``inverse_affine``), then one nearest-neighbour ``grid_sample`` of the batch with zero fill,
  sampled at the centred pixel coordinates torchvision uses (``affine``). The identity matrix
  samples every pixel at itself.
- Blends (brightness, colour, contrast, sharpness): ``clamp(f x + (1 - f) d, 0, 255)``
  truncated to uint8, where the degenerate image d is black, the grey image, the grey image's
  mean, or x smoothed by [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 (rounded, border pixels kept).
  f = 1 returns x.
- Per-channel lookup tables (posterize, solarize, invert, autocontrast, equalize): each maps the
  256 values of a channel through a table, so the batch is one gather (``apply_tables``). The
  identity table returns x.
"""
import torch
import torch.nn.functional as F

__all__ = ["inverse_affine", "affine", "grayscale", "smoothed", "blend", "identity_tables",
           "posterize_tables", "solarize_tables", "invert_tables", "autocontrast_tables",
           "equalize_tables", "apply_tables"]


def inverse_affine(angle: torch.Tensor, translate: torch.Tensor, shear: torch.Tensor,
                   center: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) float32 matrices mapping output pixels to input pixels, as
    torchvision.transforms.functional._get_inverse_affine_matrix builds them at scale 1:
    M^-1 = C RSS^-1 C^-1 T^-1 with RSS = R(angle) SHy(shear_y) SHx(shear_x), computed in float64.
    ``angle`` (B,) and ``shear`` (B, 2) in degrees; ``translate`` and ``center`` (B, 2) in
    pixels, centre relative to the image centre."""
    rot, sx, sy = torch.deg2rad(angle), torch.deg2rad(shear[:, 0]), torch.deg2rad(shear[:, 1])
    cx, cy = center.unbind(1)
    tx, ty = translate.unbind(1)
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = m0 * (-cx - tx) + m1 * (-cy - ty) + cx
    m5 = m3 * (-cx - tx) + m4 * (-cy - ty) + cy
    return torch.stack([m0, m1, m2, m3, m4, m5], 1).view(-1, 2, 3).float()


def affine(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Each image resampled through its inverse matrix (B, 2, 3): nearest neighbour, zeros
    outside, at output pixel centres (x - W/2 + 1/2, y - H/2 + 1/2) as torchvision's tensor
    affine and rotate sample them."""
    b, _, h, w = images.shape
    device = images.device
    xs = torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, steps=w, device=device)
    ys = torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, steps=h, device=device)
    base = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w), torch.ones(h, w, device=device)],
                       -1).view(1, h * w, 3)
    # Pixels to grid_sample's [-1, 1] units: x / (W/2), y / (H/2) (Python numbers: a tensor
    # built from a list would be a host-to-device copy every batch).
    columns = matrices.to(device).transpose(1, 2)
    columns = torch.stack([columns[..., 0] / (0.5 * w), columns[..., 1] / (0.5 * h)], -1)
    grid = base.expand(b, -1, -1).bmm(columns)
    out = F.grid_sample(images.float(), grid.view(b, h, w, 2), mode="nearest",
                        padding_mode="zeros", align_corners=False)
    return out.round().to(torch.uint8)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) uint8 luma 0.2989 R + 0.587 G + 0.114 B, truncated (torchvision's
    rgb_to_grayscale)."""
    r, g, b = images.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).to(torch.uint8)[:, None]


def smoothed(images: torch.Tensor) -> torch.Tensor:
    """The image convolved with [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 per channel and rounded,
    its one-pixel border kept (adjust_sharpness's degenerate image). Computed in integers as
    round(S / 13), S = 5 x centre + the 8 neighbours: S / 13 is never within 1/26 of a half, so
    torchvision's float32 convolution rounds to the same value."""
    x = images.to(torch.int16)  # S <= 13 x 255
    h, w = x.shape[-2:]
    total = 4 * x[..., 1:-1, 1:-1]
    for dy in range(3):
        for dx in range(3):
            total = total + x[..., dy:dy + h - 2, dx:dx + w - 2]
    out = images.clone()
    out[..., 1:-1, 1:-1] = ((2 * total + 13) // 26).to(torch.uint8)
    return out


def blend(images: torch.Tensor, degenerate: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """clamp(f x + (1 - f) d, 0, 255) truncated to uint8 with f = ``factor`` (B,) float64:
    torchvision's _blend, whose f and 1 - f are float64 numbers rounded to float32."""
    f = factor.view(-1, 1, 1, 1)
    out = f.float() * images + (1.0 - f).float() * degenerate
    return out.clamp(0, 255).to(torch.uint8)


def identity_tables(images: torch.Tensor) -> torch.Tensor:
    """(B, C, 256) uint8 tables that map every value to itself."""
    b, c = images.shape[:2]
    return torch.arange(256, device=images.device, dtype=torch.uint8).expand(b, c, 256)


def posterize_tables(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """v & ~(2^(8 - bits) - 1): keep the top ``bits`` (B,) bits of every value."""
    keep = (256 - 2 ** (8 - bits.long().clamp(0, 8))).to(torch.uint8).view(-1, 1, 1)
    return identity_tables(images) & keep


def solarize_tables(images: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """255 - v where v >= ``threshold`` (B,), else v."""
    values = identity_tables(images)
    return torch.where(values >= threshold.view(-1, 1, 1).to(images.device), 255 - values,
                       values)


def invert_tables(images: torch.Tensor) -> torch.Tensor:
    return 255 - identity_tables(images)


def autocontrast_tables(images: torch.Tensor) -> torch.Tensor:
    """Each channel stretched from its [min, max] to [0, 255]: (v - min) 255 / (max - min) in
    float32, clamped and truncated; a constant channel is left as it is."""
    low = images.amin(dim=(2, 3)).float()[..., None]
    high = images.amax(dim=(2, 3)).float()[..., None]
    scale = 255.0 / (high - low)
    constant = ~torch.isfinite(scale)
    low, scale = low.masked_fill(constant, 0.0), scale.masked_fill(constant, 1.0)
    values = torch.arange(256, device=images.device, dtype=torch.float32)
    return ((values - low) * scale).clamp(0, 255).to(torch.uint8)


def equalize_tables(images: torch.Tensor) -> torch.Tensor:
    """Each channel's histogram equalisation as PIL's ImageOps.equalize defines it (and
    torchvision's tensor equalize follows): step = floor((pixels - count of the highest value
    present) / 255); value v maps to floor((pixels below v + floor(step / 2)) / step), clamped
    to 255; a channel with step 0 is left as it is. Integer arithmetic, so exact."""
    b, c, h, w = images.shape
    offsets = 256 * torch.arange(b * c, device=images.device)[:, None]
    codes = images.reshape(b * c, h * w).long() + offsets
    # scatter_add_, not bincount: bincount on CUDA reads the largest code back to the host.
    flat = codes.flatten()
    hist = torch.zeros(b * c * 256, dtype=torch.int64, device=images.device).scatter_add_(
        0, flat, torch.ones_like(flat)).view(b * c, 256)
    values = torch.arange(256, device=images.device)
    highest = torch.where(hist > 0, values, -1).amax(1, keepdim=True)
    step = (h * w - hist.gather(1, highest)) // 255
    below = F.pad(hist.cumsum(1), (1, 0))[:, :-1]
    table = ((below + step // 2) // step.clamp(min=1)).clamp(0, 255)
    table = torch.where(step > 0, table, values)
    return table.to(torch.uint8).view(b, c, 256)


def apply_tables(images: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """Every value v of channel (i, c) replaced by tables[i, c, v]."""
    b, c, h, w = images.shape
    out = tables.gather(2, images.reshape(b, c, h * w).long())
    return out.view(b, c, h, w)
