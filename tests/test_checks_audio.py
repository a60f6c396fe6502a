"""The notebook-02 self-checks: right implementations pass, typical mistakes get their targeted hint."""

import math

import torch

from avlib import audio, checks


def mel_bank(F, n_fft, sample_rate, low_freq=20.0, high_freq=0.0, *, in_hz=False, slaney=False, area=False,
             from_zero=False, spacing_f=False, transpose=False, no_nyquist=False):
    """Kaldi's triangular mel filterbank [F, n_fft // 2 + 1], with switches for the usual mistakes."""
    def mel(f):
        if slaney:
            f = torch.as_tensor(f, dtype=torch.float64)
            log_part = 15 + torch.log(f.clamp(min=1000) / 1000) * 27 / math.log(6.4)
            return torch.where(f < 1000, f * 3 / 200, log_part)
        return 1127.0 * torch.log1p(torch.as_tensor(f, dtype=torch.float64) / 700.0)

    high = high_freq if high_freq > 0 else sample_rate / 2 + high_freq
    low = 0.0 if from_zero else low_freq
    lo, hi = mel(low), mel(high)
    delta = (hi - lo) / (F if spacing_f else F + 1)
    m = torch.arange(F, dtype=torch.float64)[:, None]  # [F, 1]
    left, centre, right = lo + m * delta, lo + (m + 1) * delta, lo + (m + 2) * delta  # [F, 1] each
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft  # [K]
    x = mel(freqs)[None]  # [1, K]
    if in_hz:
        hz = lambda v: 700.0 * (torch.exp(v / 1127.0) - 1)  # noqa: E731
        left, centre, right, x = hz(left), hz(centre), hz(right), freqs[None]
    up, down = (x - left) / (centre - left), (right - x) / (right - centre)  # [F, K] each
    w = torch.clamp(torch.minimum(up, down), min=0)  # [F, K]
    if area:
        w = w * 2 / (right - left)
    w = w[:, :-1] if no_nyquist else w
    return (w.T if transpose else w).float()


def test_mel_filterbank_accepts_kaldi(last_line):
    assert checks.audio.mel_filterbank(mel_bank)
    assert last_line().startswith("✅ mel_filterbank matches torchaudio")
    assert checks.audio.mel_filterbank(checks.audio.kaldi_mel_banks)


def test_mel_filterbank_hints(last_line, run_check):
    cases = {
        "in_hz": "straight lines in *mel*",
        "slaney": "1127 ln(1 + f / 700)",
        "area": "peak at 1",
        "from_zero": "starts at low_freq",
        "spacing_f": "F + 2 edges",
        "transpose": "transpose",
        "no_nyquist": "Nyquist",
    }
    for flag, phrase in cases.items():
        assert not checks.audio.mel_filterbank(lambda *a, f=flag, **k: mel_bank(*a, **k, **{f: True})), flag
        line = last_line()
        assert line.startswith("❌") and phrase in line, (flag, line)
    assert not checks.audio.mel_filterbank(lambda *a, **k: mel_bank(*a, **k) + 0.01)
    assert "largest difference" in last_line()
    run_check.skips(checks.audio.mel_filterbank)


def good_pad_or_crop(fb, target_length):
    t = fb.shape[0]
    if t >= target_length:
        return fb[:target_length]
    return torch.cat([fb, fb.new_zeros(target_length - t, fb.shape[1])])


def test_pad_or_crop_verdicts(last_line, run_check):
    assert checks.audio.pad_or_crop(good_pad_or_crop)
    assert last_line().startswith("✅ pad_or_crop")
    assert checks.audio.pad_or_crop(audio.pad_or_crop)
    wrong = {
        "keeps the end": (lambda fb, n: fb[-n:] if len(fb) >= n else good_pad_or_crop(fb, n), "*first*"),
        "pads the start": (lambda fb, n: fb[:n] if len(fb) >= n else torch.cat(
            [fb.new_zeros(n - len(fb), fb.shape[1]), fb]), "*end*"),
        "pads with the min": (lambda fb, n: fb[:n] if len(fb) >= n else torch.cat(
            [fb, fb.new_full((n - len(fb), fb.shape[1]), float(fb.min()))]), "must be 0"),
        "wrong axis": (lambda fb, n: good_pad_or_crop(fb.T, n).T, "*time* axis"),
    }
    for label, (fn, phrase) in wrong.items():
        assert not checks.audio.pad_or_crop(fn), label
        line = last_line()
        assert line.startswith("❌") and phrase in line, (label, line)
    run_check.skips(checks.audio.pad_or_crop)
