"""Patchify / unpatchify: cut spectrograms and frames into the non-overlapping p x p patches the MAE
reconstructs.

The in-patch pixel order defines the reconstruction target, so it is fixed here once (as in CAV-MAE / MAE):

* **Audio.** The model input is a time-major fbank ``[B, T, F]``. The model views it as a one-channel image
  ``[B, 1, F, T]`` (rows = frequency, columns = time; :func:`audio_to_image`) and cuts a grid of
  ``F/p`` frequency rows x ``T/p`` time columns. Tokens are row-major over (freq, time):
  ``token = f * (T/p) + t``. Inside a patch, index ``i * p + j`` holds frequency offset ``i`` and time offset
  ``j``, i.e. ``patch[b, f*(T/p) + t, i*p + j] = audio[b, p*t + j, p*f + i]``.
* **Frames.** ``[B, 3, H, W]`` gives ``H/p x W/p`` tokens, row-major (``token = y * (W/p) + x``); inside a
  patch, index ``(i * p + j) * 3 + c`` holds row offset ``i``, column offset ``j`` and channel ``c``.
"""

from __future__ import annotations

import torch
from einops import rearrange

__all__ = [
    "audio_to_image", "image_to_audio", "audio_grid", "image_grid",
    "patchify", "unpatchify", "patchify_audio", "unpatchify_audio", "patchify_image", "unpatchify_image",
    "unnormalize_patches", "reconstruction_views",
]


def _check_divisible(name: str, size: int, p: int) -> None:
    if size % p:
        raise ValueError(f"{name}={size} is not a multiple of the patch size {p}; pad or crop it to a "
                         f"multiple of {p}.")


def audio_grid(audio_length: int, num_mel_bins: int, p: int = 16) -> tuple[int, int]:
    """Token grid ``(rows, cols) = (F/p frequency rows, T/p time columns)`` of a ``[T, F]`` spectrogram."""
    _check_divisible("audio length T", audio_length, p)
    _check_divisible("num_mel_bins F", num_mel_bins, p)
    return num_mel_bins // p, audio_length // p


def image_grid(img_size: int | tuple[int, int], p: int = 16) -> tuple[int, int]:
    """Token grid ``(rows, cols) = (H/p, W/p)`` of a frame."""
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    _check_divisible("image height", h, p)
    _check_divisible("image width", w, p)
    return h // p, w // p


def audio_to_image(x: torch.Tensor) -> torch.Tensor:
    """Time-major fbank ``[B, T, F]`` -> one-channel image ``[B, 1, F, T]`` (rows = frequency, as CAV-MAE)."""
    if x.ndim != 3:
        raise ValueError(f"audio must be a [B, T, F] fbank batch, got shape {list(x.shape)}.")
    return x.unsqueeze(1).transpose(2, 3)  # [B, T, F] -> [B, 1, T, F] -> [B, 1, F, T]


def image_to_audio(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`audio_to_image`: ``[B, 1, F, T]`` -> ``[B, T, F]``."""
    return x.squeeze(1).transpose(1, 2)  # [B, 1, F, T] -> [B, F, T] -> [B, T, F]


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Image ``[B, C, H, W]`` -> patches ``[B, L, p*p*C]``, tokens row-major, in-patch order (row, col,
    channel)."""
    B, C, H, W = x.shape
    _check_divisible("height", H, p)
    _check_divisible("width", W, p)
    return rearrange(x, "b c (h p) (w q) -> b (h w) (p q c)", p=p, q=p)  # [B, C, H, W] -> [B, L, p*p*C]


def unpatchify(x: torch.Tensor, grid: tuple[int, int], p: int, channels: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, L, p*p*C]`` with ``L = rows*cols`` -> ``[B, C, rows*p, cols*p]``."""
    B, L, P = x.shape
    h, w = grid
    if L != h * w or P != p * p * channels:
        raise ValueError(f"patches of shape {list(x.shape)} do not fit a {h}x{w} grid of {p}x{p}x{channels} "
                         "patches.")
    return rearrange(x, "b (h w) (p q c) -> b c (h p) (w q)", h=h, p=p, q=p)  # [B, L, p*p*C] -> [B, C, H, W]


def patchify_audio(x: torch.Tensor, p: int = 16) -> torch.Tensor:
    """Fbank ``[B, T, F]`` -> ``[B, L, p*p]``; token ``f*(T/p) + t``, in-patch ``i*p + j`` (freq i, time
    j)."""
    return patchify(audio_to_image(x), p)  # [B, 1, F, T] -> [B, L, p*p]


def unpatchify_audio(x: torch.Tensor, audio_length: int, num_mel_bins: int = 128,
                     p: int = 16) -> torch.Tensor:
    """Inverse of :func:`patchify_audio`: ``[B, L, p*p]`` -> ``[B, T, F]``."""
    return image_to_audio(unpatchify(x, audio_grid(audio_length, num_mel_bins, p), p, 1))


def patchify_image(x: torch.Tensor, p: int = 16) -> torch.Tensor:
    """Frames ``[B, 3, H, W]`` -> ``[B, L, p*p*3]``; token ``y*(W/p) + x``, in-patch ``(i*p + j)*3 + c``."""
    return patchify(x, p)


def unpatchify_image(x: torch.Tensor, img_size: int | tuple[int, int], p: int = 16,
                     channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify_image`: ``[B, L, p*p*3]`` -> ``[B, 3, H, W]``."""
    return unpatchify(x, image_grid(img_size, p), p, channels)


def unnormalize_patches(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Undo ``norm_pix``: give every predicted patch ``[B, L, P]`` the mean and (unbiased) std of the true
    patch, as MAE's visualisation demo does (the model itself never predicts them)."""
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)  # [B, L, 1] each
    return pred * (var + eps).sqrt() + mean


def reconstruction_views(target: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, norm_pix: bool = True
                         ) -> dict[str, torch.Tensor]:
    """The pictures of a masked reconstruction, as patches ``[B, L, P]`` (float32, detached): ``masked`` the
    true patches with the masked ones NaN, ``recon`` the prediction of every patch (norm-pix predictions get the
    true patch's mean and std back), ``paste`` the prediction with the visible patches replaced by the truth.
    ``target`` = patchify(input), ``mask [B, L]`` (1 = masked). Unpatchify each to see it."""
    target, pred = target.detach().float(), pred.detach().float()
    if norm_pix:
        pred = unnormalize_patches(pred, target)
    keep = (mask.detach().float() < 0.5).unsqueeze(-1)  # [B, L, 1], True = visible
    return {"masked": torch.where(keep, target, torch.full_like(target, float("nan"))), "recon": pred,
            "paste": torch.where(keep, target, pred)}
