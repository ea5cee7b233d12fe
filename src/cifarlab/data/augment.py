"""Batched, on-device augmentation of uint8 image batches; every random choice is per sample.

All functions take ``(B, C, H, W)`` tensors on the compute device and a ``torch.Generator`` on that device, so a
whole batch is augmented by a handful of kernels and no image goes through PIL or a Python loop.

Scaling with the image size (:func:`size_rule`): the crop padding is 1/8 of the side (4 px at 32 px, 12 at 96, 20 at
160) unless given, and ``cropflip`` on images of at least :data:`RRC_MIN_SIDE` (96) px becomes ``rrcflip``: a
random-resized crop (area 8-100 %, aspect 3/4-4/3, as torchvision's ImageNet reference and timm train) and a
horizontal flip, one ``grid_sample`` per batch. At 32 px nothing changes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POLICIES = ("none", "flip", "cropflip", "rrcflip", "autoaugment", "autoaugment_flip")  # config.AUGMENT_POLICIES
RRC_MIN_SIDE = 96  # from this side up, cropflip means random-resized crop + flip (ImageNet-sized images)
RRC_SCALE = (0.08, 1.0)  # area fraction of the random-resized crop (torchvision's reference and timm)
PADDING_FRACTION = 1 / 8  # crop padding per pixel of side: 4 px at 32 px


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=gen.device)


def random_flip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right (along width, dim 3) with probability ``p``."""
    flip = _rand(gen, x.shape[0]) < p
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_crop(x: torch.Tensor, gen: torch.Generator, padding: int) -> torch.Tensor:
    """Reflect-pad by ``padding`` then take an ``H x W`` crop at a per-sample random offset."""
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    xp = F.pad(x, (padding,) * 4, mode="reflect")  # (B, C, H+2p, W+2p)
    dy = (_rand(gen, b) * (2 * padding + 1)).long()  # offsets in [0, 2p]
    dx = (_rand(gen, b) * (2 * padding + 1)).long()
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (B, W)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Index ``i`` in [-n+1, 2n-2] reflected into [0, n-1] (reflect padding without the edge repeated)."""
    i = i.abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def crop_flip(x: torch.Tensor, gen: torch.Generator, padding: int, flip_p: float = 0.5) -> torch.Tensor:
    """Random crop of a reflect-padded image followed by a random horizontal flip, per sample, as ONE gather on
    the uint8 batch: the padding is folded into the source indices, the flip into the column order. Same
    distribution as :func:`random_crop` then :func:`random_flip`, a fraction of the memory traffic."""
    b, c, h, w = x.shape
    dy = (_rand(gen, b) * (2 * padding + 1)).long() - padding  # offsets in [-p, p]
    dx = (_rand(gen, b) * (2 * padding + 1)).long() - padding
    flip = _rand(gen, b) < flip_p
    rows = _reflect(dy[:, None] + torch.arange(h, device=x.device), h)  # (B, H) source rows
    cols = _reflect(dx[:, None] + torch.arange(w, device=x.device), w)  # (B, W) source columns
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    src = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)  # (B, C, H*W)
    return torch.gather(x.reshape(b, c, h * w), 2, src).view(b, c, h, w)


def cutout(x: torch.Tensor, gen: torch.Generator, size: int) -> torch.Tensor:
    """Zero a ``size x size`` square at a per-sample random centre (DeVries & Taylor 2017; the square may run off
    the edge). Applied to the normalised batch, so zero is the dataset mean."""
    if size <= 0:
        return x
    b, _, h, w = x.shape
    cy = (_rand(gen, b) * h).long()[:, None]  # (B, 1) centres
    cx = (_rand(gen, b) * w).long()[:, None]
    rows = torch.arange(h, device=x.device) - cy + size // 2  # (B, H): inside the square when 0 <= . < size
    cols = torch.arange(w, device=x.device) - cx + size // 2
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]  # (B, H, W)
    return x.masked_fill(inside[:, None], 0.0)


def translate(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift every image by (``dy``, ``dx``) pixels, the uncovered border filled by reflection (as the training
    crop pads): output pixel (i, j) is input pixel (i - dy, j - dx), reflected into the image."""
    b, c, h, w = x.shape
    rows = _reflect(torch.arange(h, device=x.device) - dy, h)
    cols = _reflect(torch.arange(w, device=x.device) - dx, w)
    return x[:, :, rows][:, :, :, cols]


# test-time augmentation views: (mirror, dy, dx); the mean of the logits over them is the TTA prediction
TTA_VIEWS = ((False, 0, 0), (True, 0, 0), (False, 2, 2), (True, 2, 2), (False, -2, -2), (True, -2, -2))


def tta_view(x: torch.Tensor, view: tuple[bool, int, int]) -> torch.Tensor:
    mirror, dy, dx = view
    x = x.flip(3) if mirror else x
    return translate(x, dy, dx) if dy or dx else x


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (or 0..255 float) -> float32 normalised with per-channel ``mean``/``std`` given in [0, 1] units."""
    s = torch.tensor(std, device=x.device, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
    m = torch.tensor(mean, device=x.device, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
    return x.float().sub_(m).div_(s)


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear resize of a float batch to ``size x size`` (upsampling needs no antialias)."""
    if not size or x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < x.shape[-1])


def autoaugment(x: torch.Tensor, gen: torch.Generator, groups: int = 32) -> torch.Tensor:
    """torchvision's AutoAugment (CIFAR10 policy) on uint8 device tensors.

    torchvision draws one policy per call for a batched tensor, so the batch is cut into ``groups`` chunks that
    each draw their own sub-policy: a loop over 32 chunks, not over images. torchvision's global RNG is seeded
    from ``gen`` so runs stay reproducible.
    """
    from torchvision.transforms import v2

    aa = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())
    with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
        torch.manual_seed(seed)
        return torch.cat([aa(chunk) for chunk in x.chunk(groups)])


def crop_padding(side: int) -> int:
    """The crop padding for images of ``side`` px: 1/8 of the side, at least 1 (4 at 32 px)."""
    return max(1, round(side * PADDING_FRACTION))


def size_rule(policy: str, side: int, padding: int | None = None) -> tuple[str, int]:
    """The policy and crop padding to train ``side``-px images with: ``cropflip`` becomes ``rrcflip`` from
    :data:`RRC_MIN_SIDE` px up; ``padding`` None = :func:`crop_padding`. Record both in the run directory."""
    if policy not in POLICIES:
        raise ValueError(f"unknown augmentation {policy!r}; choose from: {', '.join(POLICIES)}")
    resolved = "rrcflip" if policy == "cropflip" and side >= RRC_MIN_SIDE else policy
    return resolved, crop_padding(side) if padding is None else padding


def rrc_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float 0..255: random-resized crop (:data:`RRC_SCALE`) and flip back to H x W."""
    return random_resized_crop(x.float(), gen, scale=RRC_SCALE)


class Augment:
    """A train/eval augmentation policy pair: ``train(x_u8, gen)`` and ``eval(x_u8)`` -> normalised float batches.

    Args:
        policy: ``none``, ``flip``, ``cropflip``, ``rrcflip`` (random-resized crop + flip, for images of 96 px and
            more), ``autoaugment`` (AutoAugment CIFAR10 then crop+flip) or ``autoaugment_flip`` (AutoAugment CIFAR10
            then flip, no crop: the VGG16/ResNet18 assignment's policy); see :func:`size_rule`.
        mean, std: normalisation in [0, 1] units (the data's, or the pretrained weights').
        padding: crop padding in pixels; None = 1/8 of the batch's side (:func:`crop_padding`).
        cutout: side of the square zeroed per training image (after normalisation); 0 = none.
        resolution: resize to this side on the device after augmentation (transfer recipes); None keeps the size.
    """

    def __init__(self, policy: str, mean: tuple[float, ...], std: tuple[float, ...], padding: int | None = 4,
                 resolution: int | None = None, memory_format: torch.memory_format = torch.contiguous_format,
                 cutout: int = 0) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown augmentation {policy!r}; choose from: {', '.join(POLICIES)}")
        self.policy, self.mean, self.std, self.padding, self.resolution = policy, mean, std, padding, resolution
        self.cutout = cutout
        self.memory_format = memory_format

    def train(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.policy in ("autoaugment", "autoaugment_flip"):
            x = autoaugment(x, gen)
        if self.policy in ("cropflip", "autoaugment"):
            x = crop_flip(x, gen, crop_padding(x.shape[-1]) if self.padding is None else self.padding)
        elif self.policy == "rrcflip":
            x = rrc_flip(x, gen)
        elif self.policy in ("flip", "autoaugment_flip"):
            x = random_flip(x, gen)
        x = cutout(normalize(x, self.mean, self.std), gen, self.cutout)
        return resize(x, self.resolution).contiguous(memory_format=self.memory_format)

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        return resize(normalize(x, self.mean, self.std), self.resolution).contiguous(memory_format=self.memory_format)


# ---- contrastive views (SupCon/SimCLR CIFAR setting) -------------------------------------------------------------


def random_resized_crop(x: torch.Tensor, gen: torch.Generator, scale: tuple[float, float] = (0.2, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), flip_p: float = 0.5) -> torch.Tensor:
    """Per-sample random-resized crop (area fraction in ``scale``, log-uniform aspect ``ratio``) and horizontal
    flip, as one affine ``grid_sample`` (bilinear) back to the input size. ``x`` is float (B, C, H, W)."""
    b = x.shape[0]
    area = scale[0] + (scale[1] - scale[0]) * _rand(gen, b)
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * _rand(gen, b)
    aspect = torch.exp(log_r)
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # crop width as a fraction of the image width
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (2 * _rand(gen, b) - 1) * (1 - w)  # crop centre in [-1, 1] coordinates, crop stays inside
    cy = (2 * _rand(gen, b) - 1) * (1 - h)
    sign = torch.where(_rand(gen, b) < flip_p, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = w * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])  # (B, 1, H, W), ITU-R 601 luma


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(maxc == r, (g - b) / safe % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return torch.stack([h, s, maxc], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], 1)  # (B, 3, H, W)
    return v[:, None] - v[:, None] * s[:, None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def color_jitter(x: torch.Tensor, gen: torch.Generator, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4, hue: float = 0.1, p: float = 0.8) -> torch.Tensor:
    """Per-sample brightness, contrast, saturation and hue jitter (applied in that fixed order) with probability
    ``p``; ``x`` is float in [0, 1]. Factors are uniform in [1 - a, 1 + a]; the hue shift is uniform in
    [-hue, hue] turns."""
    b = x.shape[0]

    def factor(a: float) -> torch.Tensor:
        return (1 - a + 2 * a * _rand(gen, b)).view(b, 1, 1, 1)

    apply = (_rand(gen, b) < p).view(b, 1, 1, 1)
    y = (x * factor(brightness)).clamp(0, 1)
    mean = _gray(y).mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - mean) * factor(contrast) + mean).clamp(0, 1)
    g = _gray(y)
    y = ((y - g) * factor(saturation) + g).clamp(0, 1)
    hsv = _rgb_to_hsv(y)
    shift = ((2 * _rand(gen, b) - 1) * hue).view(b, 1, 1)
    hsv = torch.stack([(hsv[:, 0] + shift) % 1.0, hsv[:, 1], hsv[:, 2]], 1)
    y = _hsv_to_rgb(hsv).clamp(0, 1)
    return torch.where(apply, y, x)


def random_grayscale(x: torch.Tensor, gen: torch.Generator, p: float = 0.2) -> torch.Tensor:
    apply = (_rand(gen, x.shape[0]) < p).view(-1, 1, 1, 1)
    return torch.where(apply, _gray(x).expand_as(x), x)


class ContrastiveViews:
    """``views(x_u8, gen) -> (B, V, C, H, W)`` normalised float views: random-resized crop (0.2-1), flip, colour
    jitter (0.4, 0.4, 0.4, 0.1; p=0.8), grayscale (p=0.2), as in the SupCon paper's CIFAR setting."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], num_views: int = 2,
                 resolution: int | None = None) -> None:
        self.mean, self.std, self.num_views, self.resolution = mean, std, num_views, resolution

    def one(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        y = random_resized_crop(x.float() / 255.0, gen)
        y = random_grayscale(color_jitter(y, gen), gen)
        return resize(normalize(y * 255.0, self.mean, self.std), self.resolution)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return torch.stack([self.one(x, gen) for _ in range(self.num_views)], 1)  # (B, V, C, H, W)

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        return resize(normalize(x, self.mean, self.std), self.resolution)
