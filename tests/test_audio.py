"""avlib.audio: loading, kaldi fbank, pad/crop, normalisation, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from torchaudio.compliance import kaldi

import avlib.audio as A


def sine(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wave: torch.Tensor, sr: int) -> float:
    spec = torch.fft.rfft(wave.double()).abs()
    return float(spec.argmax()) * sr / wave.numel()


# ------------------------------------------------------------------------------------------------------------
# load_wav
# ------------------------------------------------------------------------------------------------------------
def test_load_wav_mono_16k(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, sine(440, 1.0, 16000), 16000, subtype="PCM_16")
    w = A.load_wav(p)
    assert w.dtype == torch.float32 and w.shape == (16000,)
    assert abs(peak_hz(w, 16000) - 440) < 2


def test_load_wav_44k_stereo_is_mixed_down_and_resampled(tmp_path):
    p = tmp_path / "s.wav"
    left, right = sine(440, 1.0, 44100), sine(1000, 1.0, 44100, amp=0.25)
    sf.write(p, np.stack([left, right], 1), 44100)
    w = A.load_wav(p)
    assert w.shape == (16000,)
    spec = torch.fft.rfft(w.double()).abs()  # 1-Hz bins
    assert spec[440] > 10 * spec[700] and spec[1000] > 10 * spec[700]  # both channels survive the mixdown
    assert abs(spec[440] / spec[1000] - 2.0) < 0.1  # averaged, not summed or first-channel only


def test_load_wav_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        A.load_wav(tmp_path / "nope.wav")


def test_load_wav_corrupt(tmp_path):
    p = tmp_path / "corrupt.wav"
    p.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk" * 3)
    with pytest.raises(ValueError, match=r"corrupt\.wav.*(corrupt|re-extract)"):
        A.load_wav(p)


def test_load_wav_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.wav"):
        A.load_wav(p)


def test_load_wav_no_samples(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError, match="no samples"):
        A.load_wav(p)


# ------------------------------------------------------------------------------------------------------------
# fbank, pad/crop
# ------------------------------------------------------------------------------------------------------------
def test_downmix_pick_track_and_limit_peak_rules():
    x = sine(440, 0.1, 16000)
    assert np.allclose(A.downmix(np.stack([x, 0.5 * x])), 0.75 * x)  # the mean of the channels
    with pytest.warns(UserWarning, match="where: its 2 channels cancel"):
        assert np.array_equal(A.downmix(np.stack([x, -x]), "where"), x)  # the left channel
    silent = np.zeros((2, 1600), np.float32)
    assert np.array_equal(A.downmix(silent), silent[0])  # silence is not "cancelling"
    assert A.pick_track([np.stack([x])]) == 0
    with pytest.warns(UserWarning, match="f.mkv: audio track 0 is silent; using track 2"):
        assert A.pick_track([silent, silent, x[None], x[None]], "f.mkv") == 2
    assert A.pick_track([silent, silent]) == 0
    loud = 3 * x  # peak 1.5
    with pytest.warns(UserWarning, match="peak 1.50 exceeds 1.0 after mixing down; scaled by 0.667"):
        assert np.allclose(A.limit_peak(loud), loud / np.abs(loud).max())
    assert A.limit_peak(x) is x
    with pytest.raises(ValueError, match="w holds 1 NaN"):
        A.check_finite(np.array([0.0, np.nan]), "w")


def test_fbank_matches_kaldi_reference_settings():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16000, generator=g) * 0.1 + 0.3  # with a DC offset
    fb = A.fbank(w)
    ref = kaldi.fbank((w - w.mean())[None], htk_compat=True, sample_frequency=16000, use_energy=False,
                      window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)
    assert fb.shape == (A.num_frames(16000), 128) == (98, 128)
    assert torch.equal(fb, ref)
    assert torch.allclose(A.fbank(w - 0.3), fb, atol=1e-4)  # the waveform mean is removed


def test_fbank_mel_bins_and_errors():
    assert A.fbank(torch.randn(4000), num_mel_bins=64).shape == (23, 64)
    assert A.fbank(torch.randn(1, 4000)).shape == (23, 128)  # [1, S] accepted
    with pytest.raises(ValueError, match="shorter than one"):
        A.fbank(torch.randn(100))
    with pytest.raises(ValueError, match="mono"):
        A.fbank(torch.randn(2, 4000))


def test_pad_or_crop():
    fb = torch.arange(10 * 3, dtype=torch.float32).reshape(10, 3)
    assert torch.equal(A.pad_or_crop(fb, 10), fb)
    assert torch.equal(A.pad_or_crop(fb, 4), fb[:4])
    p = A.pad_or_crop(fb, 16, pad_value=-1.0)
    assert p.shape == (16, 3) and torch.equal(p[:10], fb) and (p[10:] == -1).all()


# ------------------------------------------------------------------------------------------------------------
# normalisation and statistics
# ------------------------------------------------------------------------------------------------------------
def test_normalize_and_stats_roundtrip(tmp_path):
    fb = torch.randn(20, 8) * 3 + 2
    st = A.AudioStats(2.0, 3.0)
    assert torch.allclose(A.normalize(fb, st), (fb - 2) / 3)
    assert torch.allclose(A.normalize(fb, 2.0, 3.0), (fb - 2) / 3)
    with pytest.raises(ValueError, match="positive std"):
        A.normalize(fb, 0.0, 0.0)
    p = st.save(tmp_path / "audio_stats.json")
    assert A.AudioStats.load(p) == st
    (tmp_path / "bad.json").write_text('{"mean": 1}')
    with pytest.raises(ValueError, match="bad.json"):
        A.AudioStats.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="dataset_stats"):
        A.AudioStats.load(tmp_path / "missing.json")


def test_dataset_stats_matches_concatenation():
    g = torch.Generator().manual_seed(1)
    fbs = [torch.randn(t, 16, generator=g) * 2 - 4 for t in (30, 50, 7)]
    st = A.dataset_stats(iter(fbs))
    allv = torch.cat(fbs).double()
    assert st.mean == pytest.approx(float(allv.mean()), abs=1e-9)
    assert st.std == pytest.approx(float(allv.std(unbiased=False)), rel=1e-9)
    with pytest.raises(ValueError, match="no values"):
        A.dataset_stats([])
    with pytest.raises(ValueError, match="std = 0"):
        A.dataset_stats([torch.zeros(3, 3)])


# ------------------------------------------------------------------------------------------------------------
# augmentation
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_spec_augment_equals_torchaudio_with_same_seed(seed):
    fb = torch.randn(200, 128)
    torch.manual_seed(seed)
    ref = torchaudio.transforms.FrequencyMasking(48)(fb.T[None])  # torchaudio layout [1, F, T]
    ref = torchaudio.transforms.TimeMasking(80)(ref)[0].T  # back to [T, F]
    out = A.spec_augment(fb, 48, 80, torch.Generator().manual_seed(seed))
    assert torch.equal(out, ref)


def test_spec_augment_masks_and_determinism():
    fb = torch.randn(400, 128) + 5
    outs = [A.spec_augment(fb, 48, 192, torch.Generator().manual_seed(s)) for s in range(20)]
    for o in outs:
        zero_rows, zero_cols = (o == 0).all(1).sum(), (o == 0).all(0).sum()
        assert zero_rows < 192 and zero_cols < 48
    assert any((o == 0).all(1).sum() > 0 for o in outs) and any((o == 0).all(0).sum() > 0 for o in outs)
    again = A.spec_augment(fb, 48, 192, torch.Generator().manual_seed(3))
    assert torch.equal(again, outs[3]) and not torch.equal(outs[3], outs[4])
    assert torch.equal(A.spec_augment(fb, 0, 0, None), fb)
    assert fb.min() > 0  # the input is not modified in place


def test_noise_and_roll():
    fb = torch.arange(128, dtype=torch.float32).repeat(100, 1)  # every time frame equal: rolling is a no-op
    out = A.noise_and_roll(fb, torch.Generator().manual_seed(0))
    d = out - fb
    assert d.min() >= 0 and d.max() < 0.1
    ramp = torch.arange(100, dtype=torch.float32)[:, None].repeat(1, 4)  # [T, F] time ramp
    rolled = [A.noise_and_roll(ramp, torch.Generator().manual_seed(s)) for s in range(8)]
    assert torch.equal(rolled[2], A.noise_and_roll(ramp, torch.Generator().manual_seed(2)))
    firsts = {int(r[0, 0].floor()) for r in rolled}
    assert len(firsts) > 1  # the roll shift varies with the seed


def test_mixup_helpers():
    g = torch.Generator().manual_seed(0)
    lams = np.array([A.sample_mixup_lambda(g) for _ in range(4000)])
    assert lams.min() > 0 and lams.max() < 1
    assert abs(lams.mean() - 0.5) < 0.01 and abs(lams.var() - 1 / 84) < 0.002  # Beta(10, 10)
    l1 = A.sample_mixup_lambda(torch.Generator().manual_seed(5), alpha=0.4)
    assert l1 == A.sample_mixup_lambda(torch.Generator().manual_seed(5), alpha=0.4)
    w, p = torch.ones(100), torch.full((60,), 3.0)
    m = A.mix_waves(w, p, 0.5)
    assert m.shape == (100,) and abs(float(m.mean())) < 1e-6
    assert torch.allclose(A.mix_waves(w + torch.arange(100.0), torch.randn(300), 1.0),
                          torch.arange(100.0) - 49.5)
