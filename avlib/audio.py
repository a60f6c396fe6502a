"""Audio front-end: WAV loading, kaldi log-mel filterbanks, pad/crop, normalisation, train-time augmentation.

The pipeline of one clip (CAV-MAE's ``_wav2fbank`` with two documented changes)::

    wave = load_wav(path)                      # [S] float32, 16 kHz mono
    fb = fbank(wave)                           # [T, F] log-mel, 10-ms hop, F = 128
    fb = normalize(fb, stats.mean, stats.std)  # dataset mean/std (AudioSet: -5.081 / 4.4849)
    fb = pad_or_crop(fb, target_length)        # pad at the end with 0 (= the dataset mean) or keep the start
    fb = spec_augment(fb, freqm, timem, g)     # train only; masked cells become 0 (= the dataset mean)
    fb = noise_and_roll(fb, g)                 # train only (CAV-MAE's noise + time roll)

Differences from the reference: it pads (and SpecAugment masks) *before* normalising, so padded frames end up
at ``(0 - mean) / std = +1.13`` instead of at the mean; here both happen after normalising, so padding and
masks are the "average sound" 0. And every random operation takes an explicit ``torch.Generator``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

SAMPLE_RATE = 16000  # Hz; every clip is resampled to this
NUM_MEL_BINS = 128  # F
FRAME_SHIFT_MS = 10.0  # hop: one fbank frame per 10 ms
FRAME_LENGTH_MS = 25.0  # window


# ------------------------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------------------------
SILENCE_PEAK = 1e-4  # a track whose peak stays below this (-80 dBFS) is silent
CANCEL_RATIO = 0.1  # the mono mix is < -20 dB below the loudest channel: the channels cancel


def load_wav(path: str | Path, sample_rate: int = SAMPLE_RATE) -> Tensor:
    """Read an audio file -> ``[S]`` float32 mono at ``sample_rate``.

    The file is recognised by its content, not its name: soundfile (libsndfile) reads WAV/FLAC/OGG/Opus/MP3,
    and anything else with sound in it (M4A/AAC, WMA, the audio track of a video, ...) is decoded by the FFmpeg
    that PyAV bundles. Then, the same for every format:

    * several audio tracks: the first one that is not silent (:func:`pick_track`, warns if it is not track 0);
    * several channels: their mean (:func:`downmix`; if they cancel, e.g. right = -left, the left channel
      with a warning);
    * resampled to ``sample_rate`` (torchaudio's windowed sinc). Levels are not changed (no normalisation;
      values beyond +-1 in float files are kept, they do not clip in the fbank).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for an unreadable or
    empty one, NaN/Inf samples, or a sound shorter than one 25-ms fbank window.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file {path} does not exist; check the datafile's 'wav' field "
                                "(relative paths are resolved against the dataset root).")
    tracks, sr = _read_tracks(path)
    if not tracks or all(t.shape[1] == 0 for t in tracks):
        raise ValueError(f"audio file {path} holds no samples; re-extract it or remove it from the datafile.")
    data = tracks[pick_track(tracks, where=f"audio file {path}")]  # [C, S]
    check_finite(data, f"audio file {path}")
    wave = torch.from_numpy(np.ascontiguousarray(downmix(data, where=f"audio file {path}")))  # [S]
    min_samples = math.ceil(sr * FRAME_LENGTH_MS / 1000)
    if wave.numel() < min_samples:
        raise ValueError(f"audio file {path} holds only {wave.numel()} samples ({wave.numel() / sr * 1000:.1f} "
                         f"ms at {sr} Hz); a clip needs at least one {FRAME_LENGTH_MS:g}-ms fbank window "
                         f"({min_samples} samples). Use a longer recording or remove it from the datafile.")
    return resample(wave, sr, sample_rate)


def _read_tracks(path: Path) -> tuple[list[np.ndarray], int]:
    """Every audio track of ``path`` as float32 ``[C, S]`` at the file's rate: soundfile, else FFmpeg."""
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [S, C]
        return [np.ascontiguousarray(data.T)], int(sr)  # one track [C, S]
    except Exception as sf_error:  # noqa: BLE001 - libsndfile raises several types; FFmpeg gets a try
        import av

        try:
            with av.open(str(path)) as container:
                streams = list(container.streams.audio)
                if not streams:
                    raise ValueError("no audio stream")
                decoders = {s.index: TrackDecoder() for s in streams}
                for packet in container.demux(*streams):
                    for frame in packet.decode():
                        decoders[packet.stream.index].add(frame)
                tracks = [d.finish() for d in decoders.values()]
                rates = {d.rate for d in decoders.values() if d.rate}
        except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read audio file {path} (soundfile: {sf_error}; FFmpeg: {e}); it is "
                             "corrupt or holds no sound. Re-extract it, e.g. with avlib.data.video.extract_clip,"
                             " or remove it from the datafile.") from None
        if len(rates) > 1:  # tracks at different rates: bring them to the first one's rate
            r0 = decoders[streams[0].index].rate
            tracks = [t if d.rate in (None, r0) else resample(torch.from_numpy(t), d.rate, r0).numpy()
                      for t, d in zip(tracks, decoders.values(), strict=True)]
            rates = {r0}
        return tracks, (rates.pop() if rates else SAMPLE_RATE)


class TrackDecoder:
    """Collects the decoded frames of one PyAV audio stream as float32 ``[C, S]``, resampled to ``rate``
    (None: the stream's own rate); ``t0`` is the time of the first frame added (seconds)."""

    def __init__(self, rate: int | None = None):
        import av

        self.resampler = av.AudioResampler(format="fltp", rate=rate)  # layout kept: we mix down ourselves
        self.rate, self.t0, self.chunks = rate, None, []

    def add(self, frame) -> None:
        if self.t0 is None:
            self.t0 = frame.time if frame.time is not None else 0.0
        self.rate = self.rate or frame.sample_rate
        self.chunks += [f.to_ndarray() for f in self.resampler.resample(frame)]  # each [C, n]

    def finish(self) -> np.ndarray:
        """Flush the resampler -> ``[C, S]`` (a stream whose channel count changes is mixed to mono)."""
        if self.t0 is not None:
            self.chunks += [f.to_ndarray() for f in self.resampler.resample(None)]
        if not self.chunks:
            return np.zeros((1, 0), np.float32)
        if len({c.shape[0] for c in self.chunks}) > 1:
            self.chunks = [c.mean(axis=0, keepdims=True) for c in self.chunks]  # [1, n] each
        return np.concatenate(self.chunks, axis=1).astype(np.float32, copy=False)  # [C, S]


def check_finite(data: np.ndarray | Tensor, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` if ``data`` holds NaN or infinite samples."""
    bad = int((~np.isfinite(np.asarray(data))).sum())
    if bad:
        raise ValueError(f"{where} holds {bad} NaN or infinite sample(s); the features would be NaN. Fix the "
                         "file (e.g. re-export it as 16-bit PCM, or replace them with "
                         "numpy.nan_to_num) or remove it.")


def pick_track(tracks: list, where: str = "") -> int:
    """Which of several audio tracks (each ``[C, S]``) to use: the first whose peak reaches
    ``SILENCE_PEAK`` (-80 dBFS), warning when that is not track 0 (track 0 if all are silent)."""
    if len(tracks) <= 1:
        return 0
    for k, t in enumerate(tracks):
        a = np.asarray(t)
        if a.size and np.nanmax(np.abs(a)) >= SILENCE_PEAK:
            if k > 0:
                warnings.warn(f"{where}: audio track 0 is silent; using track {k}, the first with sound "
                              f"(of {len(tracks)}).", stacklevel=3)
            return k
    return 0


def downmix(data: np.ndarray, where: str = "") -> np.ndarray:
    """``[C, S]`` -> mono ``[S]``: the mean of the channels (the one rule for WAV files and videos).

    If the channels cancel when averaged (the mix is more than 20 dB below the loudest channel, e.g. a
    stereo track whose right channel is the negative of the left), the left channel (0) is used instead,
    with a warning: the average would be near-silence.
    """
    data = np.asarray(data)
    if data.ndim == 1:
        return data
    if data.shape[0] == 1:
        return data[0]
    mono = data.mean(axis=0)  # [S]
    if data.shape[0] > 1 and data.shape[1]:
        loudest = float(np.sqrt(np.mean(data.astype(np.float64) ** 2, axis=1)).max())
        if loudest >= SILENCE_PEAK and float(np.sqrt(np.mean(mono.astype(np.float64) ** 2))) < \
                CANCEL_RATIO * loudest:
            warnings.warn(f"{where}: its {data.shape[0]} channels cancel when averaged (out of phase); using "
                          "the left channel.", stacklevel=3)
            return data[0]
    return mono


def limit_peak(wave: np.ndarray, where: str = "") -> np.ndarray:
    """Scale ``wave`` down to peak 1.0 if it exceeds +-1 (warning), so writing it as PCM does not clip."""
    peak = float(np.abs(wave).max()) if np.size(wave) else 0.0
    if peak <= 1.0:
        return wave
    warnings.warn(f"{where}: peak {peak:.2f} exceeds 1.0 after mixing down; scaled by {1 / peak:.3f} so the "
                  "16-bit WAV does not clip.", stacklevel=3)
    return wave / peak


def resample(wave: Tensor, orig_rate: int, new_rate: int) -> Tensor:
    """Resample ``[..., S]`` from ``orig_rate`` to ``new_rate`` Hz (torchaudio's windowed sinc)."""
    if int(orig_rate) == int(new_rate):
        return wave
    import torchaudio.functional as AF

    return AF.resample(wave, int(orig_rate), int(new_rate))


# ------------------------------------------------------------------------------------------------------------
# features
# ------------------------------------------------------------------------------------------------------------
def num_frames(num_samples: int, sample_rate: int = SAMPLE_RATE) -> int:
    """How many fbank frames :func:`fbank` gives for ``num_samples`` samples (kaldi ``snip_edges``)."""
    win = int(sample_rate * FRAME_LENGTH_MS / 1000)
    hop = int(sample_rate * FRAME_SHIFT_MS / 1000)
    return 0 if num_samples < win else 1 + (num_samples - win) // hop


def fbank(wave: Tensor, sample_rate: int = SAMPLE_RATE, num_mel_bins: int = NUM_MEL_BINS) -> Tensor:
    """Kaldi log-mel filterbank of a mono waveform ``[S]`` -> ``[T, F]`` (T ~ 100 per second, F = mel bins).

    CAV-MAE's settings: waveform mean subtracted, HTK-compatible, Hanning window, 25-ms window, 10-ms hop,
    no dither, no energy term.
    """
    from torchaudio.compliance.kaldi import fbank as kaldi_fbank

    wave = torch.as_tensor(wave, dtype=torch.float32)
    if wave.dim() == 2 and wave.shape[0] == 1:
        wave = wave[0]
    if wave.dim() != 1:
        raise ValueError(f"fbank expects a mono waveform [S], got shape {tuple(wave.shape)}; "
                         "mix down first (load_wav does it).")
    if num_frames(wave.numel(), sample_rate) == 0:
        raise ValueError(f"waveform of {wave.numel()} samples is shorter than one {FRAME_LENGTH_MS:g}-ms "
                         "window "
                         f"at {sample_rate} Hz; use clips of at least {FRAME_LENGTH_MS:g} ms.")
    wave = wave - wave.mean()
    return kaldi_fbank(wave[None], htk_compat=True, sample_frequency=sample_rate, use_energy=False,
                       window_type="hanning", num_mel_bins=num_mel_bins, dither=0.0,
                       frame_shift=FRAME_SHIFT_MS)  # [T, F]


def pad_or_crop(fb: Tensor, target_length: int, pad_value: float = 0.0) -> Tensor:
    """Pad ``[T, F]`` at the end with ``pad_value``, or keep its first ``target_length`` frames."""
    t = fb.shape[0]
    if t == target_length:
        return fb
    if t > target_length:
        return fb[:target_length]
    pad = fb.new_full((target_length - t, fb.shape[1]), pad_value)  # [target - T, F]
    return torch.cat([fb, pad], dim=0)


# ------------------------------------------------------------------------------------------------------------
# normalisation
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioStats:
    """Mean and standard deviation of a dataset's log-mel values (one scalar each, like CAV-MAE)."""

    mean: float
    std: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AudioStats:
        try:
            return cls(mean=float(d["mean"]), std=float(d["std"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"audio stats need numeric 'mean' and 'std', got {d!r}") from e

    def save(self, path: str | Path) -> Path:
        """Write ``{"mean": ..., "std": ...}`` as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> AudioStats:
        """Read stats written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"audio stats file {path} does not exist; compute it with "
                                    "avlib.audio.dataset_stats and AudioStats.save, or pass stats.")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, ValueError) as e:
            raise ValueError(f"audio stats file {path} is not valid ({e}); expected "
                             '{"mean": <float>, "std": <float>}.') from None


AUDIOSET_STATS = AudioStats(mean=-5.081, std=4.4849)  # CAV-MAE's constants (AudioSet and VGGSound)


def normalize(fb: Tensor, mean: float | AudioStats, std: float | None = None) -> Tensor:
    """``(fb - mean) / std``; ``mean`` may be an :class:`AudioStats` (then leave ``std`` out)."""
    if isinstance(mean, AudioStats):
        mean, std = mean.mean, mean.std
    if std is None or std <= 0:
        raise ValueError(f"normalize needs a positive std, got {std!r}.")
    return (fb - mean) / std


def dataset_stats(fbanks: Iterable[Tensor], progress: bool = False, total: int | None = None) -> AudioStats:
    """Mean and (population) std over every value of every ``[T, F]`` in ``fbanks`` (float64 accumulation).

    Unlike CAV-MAE (issue #24: statistics of the already padded inputs) only real frames count, no padding.
    """
    n, s, ss = 0, 0.0, 0.0
    it = fbanks
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(fbanks, total=total, desc="fbank stats")
    for fb in it:
        x = torch.as_tensor(fb).detach().to(torch.float64)
        n += x.numel()
        s += float(x.sum())
        ss += float((x * x).sum())
    if n == 0:
        raise ValueError("dataset_stats got no values (empty iterable or empty fbanks).")
    mean = s / n
    std = math.sqrt(max(ss / n - mean * mean, 0.0))
    if std == 0:
        raise ValueError("dataset_stats: all values are equal (std = 0); the clips are silent or identical.")
    return AudioStats(mean=mean, std=std)


# ------------------------------------------------------------------------------------------------------------
# train-time augmentation (every random draw comes from ``generator``)
# ------------------------------------------------------------------------------------------------------------
def _mask_along(fb: Tensor, mask_param: int, dim: int, generator: torch.Generator | None,
                mask_value: float) -> Tensor:
    """One SpecAugment mask of width ~ U[0, mask_param) along ``dim`` of ``[T, F]`` (torchaudio's draws)."""
    size = fb.shape[dim]
    value = torch.rand(1, generator=generator) * mask_param
    start = torch.rand(1, generator=generator) * (size - value)
    lo, hi = int(start.long()), int(start.long() + value.long())
    if hi <= lo:
        return fb
    fb = fb.clone()
    if dim == 0:
        fb[lo:hi] = mask_value  # time frames
    else:
        fb[:, lo:hi] = mask_value  # mel bins
    return fb


def spec_augment(fb: Tensor, freqm: int, timem: int, generator: torch.Generator | None = None,
                 mask_value: float = 0.0) -> Tensor:
    """SpecAugment on ``[T, F]``: one frequency mask (width < ``freqm``), then one time mask (< ``timem``).

    Same draws as ``torchaudio.transforms.FrequencyMasking(freqm)`` / ``TimeMasking(timem)`` (which take no
    generator): with a generator seeded like the global RNG the results are identical. 0 disables a mask.
    """
    if freqm > 0:
        fb = _mask_along(fb, freqm, 1, generator, mask_value)
    if timem > 0:
        fb = _mask_along(fb, timem, 0, generator, mask_value)
    return fb


def noise_and_roll(fb: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """CAV-MAE's noise: add ``U(0,1) * u / 10`` per cell (one ``u ~ U(0,1)`` per clip), then roll ``[T, F]``
    along time by a random shift in ``[-T, T)``."""
    t = fb.shape[0]
    scale = float(torch.rand((), generator=generator)) / 10
    fb = fb + torch.rand(fb.shape, generator=generator, dtype=fb.dtype) * scale
    shift = int(torch.randint(-t, t, (), generator=generator))
    return torch.roll(fb, shift, dims=0)


def mix_waves(wave: Tensor, partner: Tensor, lam: float) -> Tensor:
    """Mixup of two waveforms: ``lam * wave + (1 - lam) * partner``, the partner padded/cut to ``wave``'s
    length (CAV-MAE mixes mean-free waveforms before the fbank); the result is mean-free too."""
    s = wave.shape[-1]
    wave, partner = wave - wave.mean(), partner - partner.mean()
    if partner.shape[-1] < s:
        partner = torch.nn.functional.pad(partner, (0, s - partner.shape[-1]))
    mixed = lam * wave + (1.0 - lam) * partner[..., :s]
    return mixed - mixed.mean()


def sample_mixup_lambda(generator: torch.Generator | None = None, alpha: float = 10.0) -> float:
    """``lam ~ Beta(alpha, alpha)`` drawn through ``generator`` (CAV-MAE: Beta(10, 10))."""
    # torch's Beta/Gamma samplers take no generator; for integer a the a-th smallest of 2a - 1 uniforms is
    # exactly Beta(a, a). Other alphas go through numpy seeded from the generator.
    if float(alpha).is_integer() and alpha >= 1:
        a = int(alpha)
        u = torch.rand(2 * a - 1, generator=generator, dtype=torch.float64)
        return float(torch.sort(u).values[a - 1])  # a-th smallest of 2a-1 uniforms ~ Beta(a, a)
    seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))
