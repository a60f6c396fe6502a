"""A decoded-tensor cache: decode a split's media once, then train from memory-mapped slices.

::

    ds = CachedAVDataset("<root>/datafiles/train.json", cfg=AVDatasetConfig(train=True, noise=True), seed=0)
    item = ds[0]          # the same keys, shapes and random draws as AVDataset
    ds = open_dataset(datafile, cfg, seed, cache=True)   # what the training loops call

Every :class:`~avlib.data.dataset.AVDataset` item decodes its WAV, computes a kaldi fbank and decodes JPEGs,
every epoch. The cache stores, per clip, what comes *before* the random augmentation:

* ``audio.npy`` ``[N, T, F]`` float16: the normalised, padded/cropped fbank;
* ``frames.npy`` ``[N, V, 3, S, S]`` uint8: the frames the frame mode can pick (all 10, or the middle one for
  ``frames="middle"``), resized + centre-cropped to the model's size (raw size with ``augment_video``, whose
  random crop needs the whole frame);
* ``waves.npy`` ``[N, S_max]`` float32 + ``wave_len.npy`` (only with audio ``mixup``, which mixes waveforms
  before the fbank).

Files are ``.npy`` read with ``numpy.load(mmap_mode="r")``: loader workers share the pages, nothing is copied.
SpecAugment, noise + roll, the random frame, the random resized crop, mixup and label smoothing then run on
tensors with the same per-item generators and in the same order as :class:`AVDataset`.

**Equality.** Frames, labels and mixed-audio items are bit-identical to the media path. The fbank is stored
as float16, so an un-mixed audio item differs from the media path by float16 rounding of the normalised fbank
(relative 2^-11, at most about 3e-3 for values of a few units). The cache path itself is bit-identical run
to run: a rebuild writes the same bytes, and the same seed and epoch give the same items.

**Key and invalidation.** The cache folder is ``<cache_dir>/<split>-<pre>-<data>``: ``pre`` hashes the
preprocessing (sizes, sample rate, audio stats, stored frames, format version), ``data`` the dataset (the clips
in order, each media file's path, size and modification time, ``config.json``'s generation hash when
present). Changing either gives a new folder. Caches of one split with other preprocessing live side by side
(training and evaluation read different frames); when the dataset changes, the stale folder with the same
preprocessing is removed after the new one is built. Builds are atomic (a temporary folder renamed into
place, ``meta.json`` written last) and locked, so two processes never build the same cache twice; each shows
a progress bar.

Training uses it through ``PretrainConfig(cache=True)`` / ``FinetuneConfig(cache=True)`` (default: the
profile's ``cache``; on in ``gpu``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from avlib import audio as A
from avlib import vision as V
from avlib.data.datafile import NUM_FRAMES
from avlib.data.dataset import AVDataset, AVDatasetConfig, frame_ids, single_thread

__all__ = ["CACHE_VERSION", "CachedAVDataset", "cache_key", "build_cache", "open_dataset", "default_cache_dir"]

CACHE_VERSION = 1
CACHE_DIR = "cache"  # under the dataset root


def default_cache_dir(ds: AVDataset) -> Path:
    """``$AVLIB_CACHE`` if set, else ``<dataset root>/cache``."""
    return Path(os.environ.get("AVLIB_CACHE", ds.root / CACHE_DIR))


def _stored_frames(cfg: AVDatasetConfig) -> list[int]:
    """Frame indices the cache keeps: the middle one for ``frames="middle"``, else all of them."""
    return [NUM_FRAMES // 2] if cfg.frame_mode == "middle" else list(range(NUM_FRAMES))


def _stat(path: str | Path) -> list:
    try:
        st = os.stat(path)
    except OSError:
        return [str(path), None, None]  # missing: decoding will name the file
    return [str(path), st.st_size, st.st_mtime_ns]


def _spec(ds: AVDataset) -> dict:
    """The preprocessing that decides the cached bytes."""
    c = ds.cfg
    audio, video = "audio" in c.modalities, "video" in c.modalities
    return {"version": CACHE_VERSION, "audio": audio, "video": video,
            "sample_rate": c.sample_rate, "num_mel_bins": c.num_mel_bins, "target_length": c.target_length,
            "stats": ds.stats.to_dict() if audio and ds.stats is not None else None,
            "waves": audio and c.train and c.mixup > 0,
            "frames": _stored_frames(c) if video else [],
            "image_size": c.image_size, "raw_frames": bool(video and c.train and c.augment_video)}


def cache_key(ds: AVDataset) -> tuple[str, dict]:
    """``(key, spec)``: ``<preprocessing hash>-<dataset hash>`` (8 + 12 hex digits) and the preprocessing."""
    spec = _spec(ds)
    pre = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    h = hashlib.sha256()
    config = ds.root / "config.json"
    if config.is_file():  # a generated dataset: its generation hash
        try:
            h.update(str(json.loads(config.read_text()).get("hash")).encode())
        except (json.JSONDecodeError, AttributeError):
            h.update(config.read_bytes())
    for e in ds.entries:
        files = []
        if spec["audio"]:
            files.append(_stat(e.wav))
        files += [_stat(e.frame_path(i)) for i in spec["frames"]]
        h.update(json.dumps([e.video_id, files]).encode())
    return f"{pre}-{h.hexdigest()[:12]}", spec


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _Decode(torch.utils.data.Dataset):
    """Item ``i`` -> the arrays the cache stores for clip ``i`` (the deterministic part of AVDataset)."""

    def __init__(self, ds: AVDataset, spec: dict):
        self.ds, self.spec = ds, spec

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        ds, spec, c = self.ds, self.spec, self.ds.cfg
        e = ds.entries[i]
        out: dict = {}
        with single_thread():
            if spec["audio"]:
                if not e.wav:
                    raise ValueError(f"datafile {ds.datafile}: clip {e.video_id!r} has an empty 'wav'; give its "
                                     "audio file or use modalities=('video',).")
                wave = A.load_wav(e.wav, c.sample_rate)  # [S]
                fb = A.pad_or_crop(A.normalize(A.fbank(wave, c.sample_rate, c.num_mel_bins), ds.stats),
                                   c.target_length)  # [T, F]
                out["audio"] = fb.to(torch.float16).numpy()
                if spec["waves"]:
                    out["wave"] = wave.numpy()
            if spec["video"]:
                imgs = [ds._frames(e, [k]) for k in spec["frames"]]  # each [3, H, W] uint8
                if not spec["raw_frames"]:
                    imgs = [V.resize_center_crop(im, c.image_size) for im in imgs]
                shapes = {tuple(im.shape) for im in imgs}
                if len(shapes) > 1:
                    raise ValueError(f"clip {e.video_id!r}: frames of different sizes {sorted(shapes)}; the cache "
                                     "with augment_video stores whole frames of one size. Re-extract the frames "
                                     "or use cache=False.")
                out["frames"] = torch.stack(imgs).numpy()  # [V, 3, H, W]
        return out


def _open(path: Path, shape: tuple, dtype) -> np.memmap:
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def build_cache(ds: AVDataset, cache_dir: str | Path | None = None, workers: int = 0,
                progress: bool = True, rebuild: bool = False) -> Path:
    """The cache folder of ``ds`` (built first if missing or stale); see the module docstring.

    ``workers`` DataLoader processes decode in parallel while building (0: this process). ``rebuild`` builds
    anew even when a valid cache exists.
    """
    key, spec = cache_key(ds)
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir(ds)
    stem = ds.datafile.stem
    final = base / f"{stem}-{key}"
    with _locked(base / f".{stem}.lock"):
        if (final / "meta.json").is_file() and not rebuild:
            return final
        tmp = base / f".{stem}-{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        t0 = time.time()
        try:
            _write(ds, spec, tmp, workers, progress)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        (tmp / "meta.json").write_text(json.dumps(
            {"key": key, "spec": spec, "datafile": str(ds.datafile), "clips": len(ds),
             "video_ids": [e.video_id for e in ds.entries], "build_s": round(time.time() - t0, 2)}, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in base.glob(f"{stem}-{key.split('-')[0]}-*"):  # this split and preprocessing, older data
            if old != final and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
    return final


def _identity(x):
    return x


def _write(ds: AVDataset, spec: dict, out: Path, workers: int, progress: bool) -> None:
    from tqdm.auto import tqdm

    n, c = len(ds), ds.cfg
    loader = torch.utils.data.DataLoader(_Decode(ds, spec), batch_size=None, num_workers=workers,
                                         collate_fn=_identity)
    arrays: dict[str, np.memmap] = {}
    waves: list[np.ndarray] = []
    bar = tqdm(loader, total=n, desc=f"cache[{ds.datafile.stem}]", unit="clip", disable=not progress)
    for i, item in enumerate(bar):
        if spec["audio"]:
            if "audio" not in arrays:
                arrays["audio"] = _open(out / "audio.npy", (n, c.target_length, c.num_mel_bins), np.float16)
            arrays["audio"][i] = item["audio"]
            if spec["waves"]:
                waves.append(item["wave"])
        if spec["video"]:
            f = item["frames"]  # [V, 3, H, W]
            if "frames" not in arrays:
                arrays["frames"] = _open(out / "frames.npy", (n, *f.shape), np.uint8)
            if f.shape != arrays["frames"].shape[1:]:
                raise ValueError(f"clip {ds.entries[i].video_id!r}: frames {f.shape[2:]} differ from the "
                                 f"first clip's {arrays['frames'].shape[3:]}; the cache with augment_video "
                                 "stores whole frames of one size. Re-extract the frames or use cache=False.")
            arrays["frames"][i] = f
    if waves:
        lengths = np.array([len(w) for w in waves], dtype=np.int64)
        wv = _open(out / "waves.npy", (n, int(lengths.max())), np.float32)
        for i, w in enumerate(waves):
            wv[i, :len(w)] = w
        np.save(out / "wave_len.npy", lengths)
        arrays["waves"] = wv
    for a in arrays.values():
        a.flush()


class CachedAVDataset(AVDataset):
    """:class:`AVDataset` whose items come from the decoded-tensor cache (built on first use).

    Same arguments as :class:`AVDataset`, plus ``cache_dir`` (default :func:`default_cache_dir`), ``workers``
    (decoding processes while building) and ``progress``. Items equal the media path's as the module
    docstring defines; ``cache_path`` is the folder in use.
    """

    def __init__(self, datafile: str | Path, label_csv: str | Path | None = None,
                 cfg: AVDatasetConfig | None = None, seed: int = 0, cache_dir: str | Path | None = None,
                 workers: int = 0, progress: bool = True, rebuild: bool = False):
        super().__init__(datafile, label_csv, cfg, seed)
        self.cache_path = build_cache(self, cache_dir, workers, progress, rebuild)
        meta = json.loads((self.cache_path / "meta.json").read_text())
        self.spec = meta["spec"]
        if meta["video_ids"] != [e.video_id for e in self.entries]:
            raise RuntimeError(f"cache {self.cache_path} lists other clips than {self.datafile}; delete the "
                               "folder to rebuild it.")
        self._arrays: dict[str, np.ndarray] | None = None

    def __getstate__(self) -> dict:  # loader workers re-open the memory maps instead of receiving copies
        state = dict(self.__dict__)
        state["_arrays"] = None
        return state

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The cache's arrays, memory-mapped read-only (opened on first use, per process)."""
        if self._arrays is None:
            self._arrays = {p.stem: np.load(p, mmap_mode="r") for p in self.cache_path.glob("*.npy")}
        return self._arrays

    def __repr__(self) -> str:
        return super().__repr__().replace("AVDataset(", "CachedAVDataset(", 1) + f" <- {self.cache_path}"

    def _wave(self, index: int) -> Tensor:
        n = int(self.arrays["wave_len"][index])
        return torch.from_numpy(np.array(self.arrays["waves"][index, :n]))  # [S]

    def _cached_frames(self, index: int, ids: list[int]) -> Tensor:
        rows = [self.spec["frames"].index(i) for i in ids]
        f = torch.from_numpy(np.array(self.arrays["frames"][index, rows]))  # [len(ids), 3, H, W]
        return f[0] if len(ids) == 1 else f

    def _item(self, index: int) -> dict:
        # the same draws, in the same order, as AVDataset._item
        c = self.cfg
        g = self.generator(index)
        partner, lam = self._mixup_draw(g)
        item: dict = {}
        if "audio" in c.modalities:
            if partner is not None:  # mixup mixes waveforms before the fbank, exactly as the media path
                item["audio"] = self._fbank(A.mix_waves(self._wave(index), self._wave(partner), lam), g)
            else:
                fb = torch.from_numpy(np.array(self.arrays["audio"][index])).float()  # [T, F]
                if c.train:
                    if c.freqm or c.timem:
                        fb = A.spec_augment(fb, c.freqm, c.timem, g)
                    if c.noise:
                        fb = A.noise_and_roll(fb, g)
                item["audio"] = fb
        if "video" in c.modalities:
            img = self.transform(self._cached_frames(index, frame_ids(c.frame_mode, g)), g)
            if partner is not None:
                img2 = self.transform(self._cached_frames(partner, frame_ids(c.frame_mode, g)), g)
                img = lam * img + (1.0 - lam) * img2
            item["video"] = img
        return self._finish(item, index, partner, lam)


def open_dataset(datafile: str | Path, cfg: AVDatasetConfig | None = None, seed: int = 0, cache: bool = True,
                 progress: bool = True, cache_dir: str | Path | None = None, workers: int = 0) -> AVDataset:
    """:class:`CachedAVDataset` if ``cache`` else :class:`AVDataset` (what the training loops build);
    ``progress``, ``cache_dir`` and ``workers`` only matter for the cache."""
    if cache:
        return CachedAVDataset(datafile, cfg=cfg, seed=seed, cache_dir=cache_dir, workers=workers,
                               progress=progress)
    return AVDataset(datafile, cfg=cfg, seed=seed)
