"""Self-checks for notebook 02 (waveform to log-mel): Kaldi's mel filterbank and pad/crop to a target length.

:func:`mel_filterbank` compares the learner's ``[F, n_fft // 2 + 1]`` filterbank with torchaudio's
``torchaudio.compliance.kaldi.get_mel_banks`` (plus the zero column for the Nyquist bin that ``kaldi.fbank``
adds) on three settings, and recognises the usual departures: triangles drawn in Hz instead of mel, the
Slaney mel scale, area-normalised triangles, ``low_freq`` ignored, centres spaced by ``F`` instead of
``F + 1``.
:func:`pad_or_crop` compares with :func:`avlib.audio.pad_or_crop`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torchaudio.compliance.kaldi import get_mel_banks

from avlib import audio
from avlib.checks import FAIL, OK, run
from avlib.data.dataset import single_thread

__all__ = ["mel_filterbank", "pad_or_crop", "kaldi_mel_banks"]

# (num_mel_bins, n_fft, sample_rate, low_freq, high_freq): CAV-MAE's setting first
_SETTINGS = ((128, 512, 16000, 20.0, 0.0), (40, 512, 16000, 60.0, 7000.0), (64, 1024, 22050, 20.0, -1000.0))


def kaldi_mel_banks(num_mel_bins: int = 128, n_fft: int = 512, sample_rate: int = 16000,
                    low_freq: float = 20.0, high_freq: float = 0.0) -> torch.Tensor:
    """torchaudio's Kaldi filterbank + the Nyquist column ``kaldi.fbank`` adds -> ``[F, n_fft // 2 + 1]``."""
    banks, _ = get_mel_banks(num_mel_bins, n_fft, float(sample_rate), low_freq, high_freq, 100.0, -500.0, 1.0)
    return torch.nn.functional.pad(banks, (0, 1))  # [F, n_fft/2] -> [F, n_fft/2 + 1]


# ----------------------------------------------------------------------------------------------------------
# mel filterbank
# ----------------------------------------------------------------------------------------------------------
def _htk_mel(f: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(f / 700.0)


def _slaney_mel(f: torch.Tensor) -> torch.Tensor:
    """Slaney's (Auditory Toolbox / librosa default) mel: linear below 1 kHz, logarithmic above."""
    lin = f / (200.0 / 3)
    log = 15.0 + torch.log(f.clamp(min=1000.0) / 1000.0) / (math.log(6.4) / 27.0)
    return torch.where(f < 1000.0, lin, log)


def _variant(kind: str, F: int, n_fft: int, sr: int, low: float, high: float) -> torch.Tensor:
    """Filterbanks ``[F, n_fft // 2 + 1]`` built with one of the usual departures from Kaldi."""
    high = high if high > 0 else high + sr / 2
    low = 0.0 if kind == "low_ignored" else low
    scale = _slaney_mel if kind == "slaney" else _htk_mel
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sr / n_fft  # [K] bin centre frequencies, Hz
    lo, hi = scale(torch.tensor(low, dtype=torch.float64)), scale(torch.tensor(high, dtype=torch.float64))
    steps = F if kind == "spacing" else F + 1
    edges = lo + torch.arange(F + 2, dtype=torch.float64) * (hi - lo) / steps  # [F + 2] mel
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # [F, 1] each
    if kind == "hz":  # triangles straight in Hz between the same edges
        inv = 700.0 * (torch.exp(torch.stack([left, centre, right]) / 1127.0) - 1.0)
        left, centre, right = inv[0], inv[1], inv[2]
        x = freqs[None]  # [1, K]
    else:
        x = scale(freqs)[None]  # [1, K]
    up, down = (x - left) / (centre - left), (right - x) / (right - centre)  # [F, K] each
    w = torch.clamp(torch.minimum(up, down), min=0)  # [F, K]
    if kind == "area":
        w = w / w.sum(1, keepdim=True).clamp(min=1e-12)
    return w.float()


_MEL_HINTS = {
    "hz": "Kaldi's triangles are straight lines in *mel*, not in Hz: compute both slopes on mel(f) of each "
          "FFT bin, e.g. up = (mel(f) - left) / (centre - left).",
    "slaney": "use the HTK/Kaldi mel scale mel(f) = 1127 ln(1 + f / 700) everywhere (not Slaney's scale, "
              "which is linear below 1 kHz).",
    "area": "Kaldi's triangles peak at 1: do not normalise them by their area or sum.",
    "low_ignored": "the first triangle starts at low_freq (20 Hz by default), not at 0 Hz.",
    "spacing": "F triangles need F + 2 edges: the centre of triangle m is mel_low + (m + 1) * delta with "
               "delta = (mel_high - mel_low) / (F + 1).",
}


def _diagnose_mel(got: torch.Tensor, setting: tuple) -> str:
    F, n_fft, sr, low, high = setting
    K = n_fft // 2 + 1
    if tuple(got.shape) == (K, F):
        return f"shape {list(got.shape)} is [K, F]; return [F, K] = {[F, K]}, a row per mel bin (transpose)."
    if tuple(got.shape) == (F, K - 1):
        return (f"shape {list(got.shape)}: include the Nyquist bin, K = n_fft // 2 + 1 = {K} columns (what "
                "torch.fft.rfft returns for a frame of n_fft samples).")
    if tuple(got.shape) != (F, K):
        return f"shape {list(got.shape)}, expected [F, n_fft // 2 + 1] = {[F, K]}."
    ref = kaldi_mel_banks(*setting)
    scale = got.double().sum(1) / ref.double().sum(1).clamp(min=1e-12)  # [F]
    if (got.double() - ref.double() * scale[:, None]).abs().max() < 1e-3 and (scale - 1).abs().max() > 1e-2:
        return _MEL_HINTS["area"]
    for kind, hint in _MEL_HINTS.items():
        if (got.double() - _variant(kind, *setting).double()).abs().max() < 1e-3:
            return hint
    diff = (got.double() - ref.double()).abs()
    m, k = divmod(int(diff.argmax()), K)
    return (f"largest difference at mel bin {m}, FFT bin {k} ({k * sr / n_fft:.0f} Hz): got {got[m, k]:.4f}, "
            f"expected {ref[m, k]:.4f}. FFT bin k is at k * sample_rate / n_fft Hz; weights are "
            "max(0, min(up, down)) of the two slopes in mel.")


def mel_filterbank(fn: Callable[..., torch.Tensor], atol: float = 1e-4) -> bool:
    """Check ``fn(num_mel_bins, n_fft, sample_rate, low_freq=20.0, high_freq=0.0) -> [F, n_fft // 2 + 1]``
    against torchaudio's Kaldi filterbank (``high_freq <= 0`` means "Nyquist + high_freq")."""
    with single_thread():  # tiny tensors: extra threads only cost time on a busy machine
        return _check_mel_filterbank(fn, atol)


def _check_mel_filterbank(fn: Callable[..., torch.Tensor], atol: float) -> bool:
    name = "mel_filterbank"
    for setting in _SETTINGS:
        F, n_fft, sr, low, high = setting
        ran, got = run(name, fn, F, n_fft, sr, low_freq=low, high_freq=high)
        if not ran:
            return False
        if not isinstance(got, torch.Tensor):
            print(f"{FAIL} {name} must return a tensor, got {type(got).__name__}.")
            return False
        ref = kaldi_mel_banks(*setting)
        if tuple(got.shape) == tuple(ref.shape) and (got.double() - ref.double()).abs().max() <= atol:
            continue
        where = f"F={F}, n_fft={n_fft}, sample_rate={sr}, low_freq={low:g}, high_freq={high:g}"
        print(f"{FAIL} {name}({where}): {_diagnose_mel(got.detach(), setting)}")
        return False
    print(f"{OK} {name} matches torchaudio's Kaldi filterbank (3 settings, tolerance {atol:g})")
    return True


# ----------------------------------------------------------------------------------------------------------
# pad or crop
# ----------------------------------------------------------------------------------------------------------
def pad_or_crop(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> bool:
    """Check ``fn(fb [T, F], target_length) -> [target_length, F]`` against :func:`avlib.audio.pad_or_crop`
    (pad at the end with 0, or keep the first ``target_length`` frames)."""
    name = "pad_or_crop"
    g = torch.Generator().manual_seed(0)
    for T, target in ((10, 16), (23, 16), (16, 16), (5, 48)):
        fb = torch.randn(T, 8, generator=g) - 3.0  # [T, F]; all values negative, so a 0 pad stands out
        ran, got = run(name, fn, fb.clone(), target)
        if not ran:
            return False
        exp = audio.pad_or_crop(fb, target)
        if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(exp.shape) and torch.equal(got, exp):
            continue
        where = f"fb of shape [T, F] = {[T, 8]}, target_length {target}"
        if not isinstance(got, torch.Tensor):
            hint = f"return a tensor, got {type(got).__name__}."
        elif tuple(got.shape) == (T, target) or (got.ndim == 2 and got.shape[1] != 8):
            hint = (f"shape {list(got.shape)}: pad or crop the *time* axis (dim 0, frames) and keep the 8 "
                    "mel bins of dim 1.")
        elif tuple(got.shape) != tuple(exp.shape):
            hint = f"shape {list(got.shape)}, expected [target_length, F] = {list(exp.shape)}."
        elif T > target and torch.equal(got, fb[T - target:]):
            hint = "keep the *first* target_length frames (fb[:target_length]) as CAV-MAE does, not the last."
        elif T < target and torch.equal(got[target - T:], fb):
            hint = "pad at the *end* (after the last frame), not at the start."
        elif T < target and torch.equal(got[:T], fb):
            hint = (f"the padded frames must be 0 (the dataset mean after normalising), got values like "
                    f"{float(got[T, 0]):.3g}.")
        else:
            hint = "the result differs from fb[:target_length], or fb followed by zero frames."
        print(f"{FAIL} {name} on {where}: {hint}")
        return False
    print(f"{OK} {name} matches avlib (shorter, longer and exact inputs)")
    return True
