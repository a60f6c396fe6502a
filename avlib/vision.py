"""Visual front-end: read a frame, resize + centre crop + ImageNet normalisation, optional train augmentation.

CAV-MAE's frame pipeline is ``Resize(224, bicubic) -> CenterCrop(224) -> ToTensor -> Normalize(ImageNet)`` for
training and evaluation alike (no augmentation). :func:`eval_transform` is exactly that;
:func:`train_transform` is the same unless ``augment=True`` (random resized crop + horizontal flip, drawn from
an explicit ``torch.Generator``; the same crop and flip for every frame of one clip).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_frame(path: str | Path, size: int | None = None) -> Tensor:
    """Read an image file -> ``[3, H, W]`` uint8 RGB, recognised by content (Pillow), whatever its name.

    * Greyscale, palette, CMYK and RGBA are converted to RGB (alpha dropped); 16-bit greyscale (PNG ``I;16``)
      is scaled to 8 bits (``v / 257``), not clipped to white; 32-bit integer images with values above 255
      are taken as 16-bit; float images in [0, 1] are scaled by 255.
    * The EXIF orientation tag of photos is honoured: the image comes out as a viewer shows it.
    * ``size``: the caller only needs a shorter side of ``size`` pixels (it resizes afterwards). A JPEG at
      least twice as large is then decoded at 1/2, 1/4 or 1/8 scale (Pillow's draft mode, with a shorter
      side still >= ``size``), which saves most of the memory and time of decoding, e.g., 4000x3000 photos.

    Decoded by Pillow (torchvision's image decoders are deprecated since 0.29 and only ~0.1 ms faster).
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for an empty,
    undecodable or absurdly large (decompression bomb) one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"frame {path} does not exist; the datafile's 'video_path' must hold "
                                "frame_<i>/<video_id>.jpg for i = 0..9 (re-extract with avlib.data.video).")
    if path.stat().st_size == 0:
        raise ValueError(f"frame {path} is an empty file; re-extract the clip's frames or drop the clip.")
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if size is not None and im.format == "JPEG" and 2 * size <= min(im.size):
                s = size / min(im.size)
                im.draft("RGB", (math.ceil(im.size[0] * s), math.ceil(im.size[1] * s)))
            if im.getexif().get(0x0112, 1) != 1:  # EXIF orientation: turn the photo as a viewer shows it
                im = ImageOps.exif_transpose(im)
            arr = _rgb_array(im)  # [H, W, 3]
    except Image.DecompressionBombError as e:
        raise ValueError(f"frame {path} claims a size beyond Pillow's safety limit ({e}); it is corrupt or a "
                         "'decompression bomb'. Downscale the image (e.g. to 1024 px) or drop it.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"cannot decode frame {path} ({type(e).__name__}: {e}); the file is corrupt or not "
                         "an "
                         "image. Re-extract the clip's frames or drop the clip from the datafile.") from None
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()  # [H, W, 3] -> [3, H, W]


def _rgb_array(im) -> np.ndarray:
    """PIL image of any mode -> ``[H, W, 3]`` uint8 (see :func:`load_frame` for the high-bit-depth rules)."""
    if im.mode.startswith("I") or im.mode == "F":
        a = np.asarray(im).astype(np.float64)  # [H, W]
        if im.mode.startswith("I;16") or (im.mode == "I" and a.size and a.max() > 255):
            a = a / 257.0  # 16 bit -> 8 bit
        elif im.mode == "F" and a.size and a.max() <= 1.0:
            a = a * 255.0
        grey = np.clip(np.round(a), 0, 255).astype(np.uint8)  # [H, W]
        return np.repeat(grey[..., None], 3, axis=-1)  # [H, W, 3]
    return np.array(im.convert("RGB"))  # [H, W, 3]


def resize_center_crop(img: Tensor, size: int) -> Tensor:
    """Resize the shorter side of ``[..., 3, H, W]`` to ``size`` (bicubic, antialiased); centre-crop square.

    A no-op for an image that is already ``size x size``.
    """
    h, w = img.shape[-2:]
    if (h, w) == (size, size):
        return img
    if min(h, w) != size:
        img = TF.resize(img, [size], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return TF.center_crop(img, [size, size])


def to_normalized_float(img: Tensor) -> Tensor:
    """uint8 ``[..., 3, H, W]`` -> float32 in [0, 1] -> ImageNet-normalised."""
    img = TF.to_dtype(img, torch.float32, scale=True)
    return TF.normalize(img, IMAGENET_MEAN, IMAGENET_STD)


def denormalize(img: Tensor) -> Tensor:
    """Undo :func:`to_normalized_float` -> float in [0, 1] (for plotting), ``[..., 3, H, W]``."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=img.dtype, device=img.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=img.dtype, device=img.device)[:, None, None]
    return (img * std + mean).clamp(0, 1)


class FrameTransform:
    """uint8 ``[3, H, W]`` or ``[V, 3, H, W]`` -> float ``[..., 3, S, S]``: (random resized crop + flip if
    ``augment``, else resize + centre crop) then ImageNet normalisation. Call as ``t(img, generator)``."""

    def __init__(self, image_size: int, augment: bool = False, scale: tuple[float, float] = (0.35, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: float = 0.5):
        self.image_size, self.augment = int(image_size), bool(augment)
        self.scale, self.ratio, self.flip = scale, ratio, flip

    def __repr__(self) -> str:
        aug = f", augment=True, scale={self.scale}, flip={self.flip}" if self.augment else ""
        return f"FrameTransform(image_size={self.image_size}{aug})"

    def _crop_params(self, h: int, w: int, generator: torch.Generator | None) -> tuple[int, int, int, int]:
        """torchvision's RandomResizedCrop parameter search, drawing from ``generator``."""
        area = h * w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
            target = area * (self.scale[0] + u[0] * (self.scale[1] - self.scale[0]))
            aspect = math.exp(log_ratio[0] + u[1] * (log_ratio[1] - log_ratio[0]))
            cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                return int(u[2] * (h - ch + 1)), int(u[3] * (w - cw + 1)), ch, cw
        side = min(h, w)  # fallback: central square
        return (h - side) // 2, (w - side) // 2, side, side

    def __call__(self, img: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if img.dtype != torch.uint8 or img.dim() not in (3, 4) or img.shape[-3] != 3:
            raise ValueError(f"FrameTransform expects uint8 [3, H, W] or [V, 3, H, W], got {img.dtype} "
                             f"{tuple(img.shape)}; load frames with avlib.vision.load_frame.")
        s = self.image_size
        if not self.augment:
            return to_normalized_float(resize_center_crop(img, s))
        top, left, ch, cw = self._crop_params(*img.shape[-2:], generator)
        img = TF.resized_crop(img, top, left, ch, cw, [s, s], interpolation=InterpolationMode.BICUBIC,
                              antialias=True)  # [..., 3, S, S]
        if float(torch.rand((), generator=generator)) < self.flip:
            img = TF.horizontal_flip(img)
        return to_normalized_float(img)


def eval_transform(image_size: int) -> FrameTransform:
    """Resize (bicubic) + centre crop + ImageNet normalisation (CAV-MAE's only frame transform)."""
    return FrameTransform(image_size, augment=False)


def train_transform(image_size: int, augment: bool = False) -> FrameTransform:
    """The eval transform (``augment=False``, the reference) or random resized crop + flip (``augment``)."""
    return FrameTransform(image_size, augment=augment)
