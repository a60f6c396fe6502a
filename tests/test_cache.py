"""avlib.data.cache: cache-backed items equal media-decoded items; the cache is rebuilt when data or
preprocessing change. A tiny dataset is built here (1-s tones, noisy 48x40 frames)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

import avlib.audio as A
from avlib.data.cache import CachedAVDataset, build_cache, cache_key, open_dataset
from avlib.data.datafile import Entry, write_datafile, write_label_csv
from avlib.data.dataset import AVDataset, AVDatasetConfig

SIZE, T = 32, 112  # model input H = W; target_length (a 1-s clip has 98 fbank frames)
# the cache stores the normalised fbank as float16: relative rounding 2^-11 of values of a few units
FP16_ATOL = 4e-3


def make_dataset(root: Path, n: int = 5) -> Path:
    rng = np.random.default_rng(0)
    entries = []
    for c in range(n):
        vid = f"clip{c}"
        t = np.arange(16000) / 16000
        wave = (0.3 * np.sin(2 * np.pi * 250 * (c + 1) * t) + 0.01 * rng.standard_normal(16000)).astype(np.float32)
        (root / "audio").mkdir(parents=True, exist_ok=True)
        sf.write(root / "audio" / f"{vid}.wav", wave, 16000, subtype="PCM_16")
        for f in range(10):
            p = root / "frames" / f"frame_{f}" / f"{vid}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(p, quality=90)
        entries.append(Entry(vid, str(root / "audio" / f"{vid}.wav"), str(root / "frames"), (f"/m/{c % 2}",)))
    write_label_csv(root / "labels.csv", ["/m/0", "/m/1"])
    A.dataset_stats([A.fbank(A.load_wav(e.wav)) for e in entries]).save(root / "audio_stats.json")
    return write_datafile(root / "datafiles" / "train.json", entries)


@pytest.fixture()
def datafile(tmp_path) -> Path:
    return make_dataset(tmp_path / "ds")


def cfg(**kw) -> AVDatasetConfig:
    return AVDatasetConfig(**{"target_length": T, "image_size": SIZE, "num_mel_bins": 128, **kw})


CONFIGS = {
    "eval": cfg(),
    "pretrain": cfg(train=True, noise=True),
    "finetune": cfg(train=True, noise=True, freqm=24, timem=40, mixup=0.6, label_smoothing=0.1),
    "augment_all_frames": cfg(train=True, augment_video=True, frames="all", mixup=0.5),
    "video_mixup": cfg(train=True, modalities=("video",), mixup=1.0),
}


def assert_items_match(cached: dict, media: dict, mixed: bool) -> None:
    assert set(cached) == set(media)
    assert cached["index"] == media["index"] and cached["video_id"] == media["video_id"]
    assert torch.equal(cached["label"], media["label"])
    if "video" in media:
        assert cached["video"].dtype == media["video"].dtype and torch.equal(cached["video"], media["video"])
    if "audio" in media:
        a, b = cached["audio"], media["audio"]
        assert a.shape == b.shape and a.dtype == b.dtype == torch.float32
        if mixed:  # mixup re-computes the fbank from the stored waveforms: exact
            assert torch.equal(a, b)
        else:
            assert (a - b).abs().max() <= FP16_ATOL
            assert not torch.equal(a, b) or a.abs().max() == 0  # float16 storage is visible: the test can fail


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cached_items_equal_media_items(datafile, tmp_path, name):
    c = CONFIGS[name]
    media = AVDataset(datafile, cfg=c, seed=3)
    cached = CachedAVDataset(datafile, cfg=c, seed=3, cache_dir=tmp_path / "cache", progress=False)
    mixed_seen = 0
    for epoch in (0, 1):
        media.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(media)):
            m, k = media[i], cached[i]
            # an item is mixed iff its label is a blend (the partner's label differs from its own) or, with
            # the same class, whenever mixup fired: detect via the generator's first draw, as the dataset does
            g = media.generator(i)
            mixed = c.train and c.mixup > 0 and float(torch.rand((), generator=g)) < c.mixup
            mixed_seen += mixed
            assert_items_match(k, m, mixed)
    if c.mixup > 0:
        assert mixed_seen > 0


def test_cache_is_bit_identical_run_to_run(datafile, tmp_path):
    c = CONFIGS["finetune"]
    one = CachedAVDataset(datafile, cfg=c, seed=1, cache_dir=tmp_path / "a", progress=False)
    two = CachedAVDataset(datafile, cfg=c, seed=1, cache_dir=tmp_path / "b", progress=False)
    assert one.cache_path.name == two.cache_path.name  # same key
    for f in ("audio.npy", "frames.npy", "waves.npy", "wave_len.npy"):
        assert (one.cache_path / f).read_bytes() == (two.cache_path / f).read_bytes(), f
    for i in range(len(one)):
        a, b = one[i], two[i]
        assert all(torch.equal(a[k], b[k]) for k in ("audio", "video", "label"))
    assert torch.equal(one[2]["audio"], one[2]["audio"])  # reading twice: the same item


def test_cache_layout_and_dtypes(datafile, tmp_path):
    ds = CachedAVDataset(datafile, cfg=CONFIGS["pretrain"], cache_dir=tmp_path / "c", progress=False)
    arr = ds.arrays
    assert arr["audio"].dtype == np.float16 and arr["audio"].shape == (5, T, 128)
    assert arr["frames"].dtype == np.uint8 and arr["frames"].shape == (5, 10, 3, SIZE, SIZE)  # resized once
    assert isinstance(arr["audio"], np.memmap) and "waves" not in arr  # no mixup: no waveforms
    meta = json.loads((ds.cache_path / "meta.json").read_text())
    assert meta["clips"] == 5 and meta["spec"]["frames"] == list(range(10))
    mid = CachedAVDataset(datafile, cfg=CONFIGS["eval"], cache_dir=tmp_path / "c", progress=False)
    assert mid.arrays["frames"].shape[1] == 1  # evaluation reads only the middle frame
    assert mid.cache_path != ds.cache_path and ds.cache_path.is_dir()  # other preprocessing, both kept


def test_cache_is_rebuilt_when_data_or_preprocessing_change(datafile, tmp_path):
    base = tmp_path / "c"
    ds = CachedAVDataset(datafile, cfg=cfg(train=True), cache_dir=base, progress=False)
    first = ds.cache_path
    assert build_cache(ds, base, progress=False) == first  # valid: reused
    stamp = (first / "meta.json").stat().st_mtime_ns

    again = CachedAVDataset(datafile, cfg=cfg(train=True), cache_dir=base, progress=False)
    assert again.cache_path == first and (first / "meta.json").stat().st_mtime_ns == stamp

    longer = CachedAVDataset(datafile, cfg=cfg(train=True, target_length=T + 16), cache_dir=base, progress=False)
    assert longer.cache_path != first and longer.arrays["audio"].shape[1] == T + 16
    assert first.exists()  # other preprocessing: kept beside the new one

    # the dataset changes: a clip's audio is rewritten (other content, other mtime)
    wav = Path(longer.entries[0].wav)
    wave, sr = sf.read(wav, dtype="float32")
    sf.write(wav, wave[::-1].copy(), sr, subtype="PCM_16")
    os.utime(wav, ns=(wav.stat().st_atime_ns, wav.stat().st_mtime_ns + 10**9))
    fresh = CachedAVDataset(datafile, cfg=cfg(train=True, target_length=T + 16), cache_dir=base, progress=False)
    assert fresh.cache_path != longer.cache_path
    assert not longer.cache_path.exists()  # same preprocessing, stale data: removed
    media = AVDataset(datafile, cfg=cfg(target_length=T + 16))
    got = torch.from_numpy(np.array(fresh.arrays["audio"][0])).float()
    assert (got - media[0]["audio"]).abs().max() <= FP16_ATOL

    # the audio statistics change: another key too
    key, _ = cache_key(fresh)
    A.AudioStats(mean=0.0, std=1.0).save(datafile.parent.parent / "audio_stats.json")
    assert cache_key(AVDataset(datafile, cfg=cfg(train=True, target_length=T + 16)))[0] != key


def test_open_dataset_and_worker_pickling(datafile, tmp_path):
    c = CONFIGS["pretrain"]
    plain = open_dataset(datafile, c, seed=0, cache=False, workers=2)  # what the loops pass with cache=False
    cached = open_dataset(datafile, c, seed=0, cache=True, cache_dir=tmp_path / "c", progress=False)
    assert type(plain) is AVDataset and isinstance(cached, CachedAVDataset)
    _ = cached[0]  # opens the memory maps
    import pickle

    clone = pickle.loads(pickle.dumps(cached))  # what a spawned loader worker receives: no array copies
    assert clone._arrays is None and len(pickle.dumps(cached)) < 100_000
    assert torch.equal(clone[1]["video"], cached[1]["video"])


def test_cache_names_a_broken_file(datafile, tmp_path):
    ds = AVDataset(datafile, cfg=CONFIGS["eval"])
    bad = ds.entries[2].frame_path(5)
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=str(bad.name)):
        CachedAVDataset(datafile, cfg=CONFIGS["eval"], cache_dir=tmp_path / "c", progress=False)
    assert not list((tmp_path / "c").glob("train-*"))  # nothing half-built in place


def test_training_loops_read_the_cache(ci_data, tmp_path, monkeypatch):
    from avlib import train as T

    monkeypatch.setenv("AVLIB_CACHE", str(tmp_path / "cache"))
    common = dict(data=str(ci_data), epochs=1, batch_size=8, amp=False, progress=False, max_steps=2, cache=True)
    pre = T.pretrain(T.PretrainConfig(run_dir=str(tmp_path / "pre"), splits=("train",), validate=False,
                                      **common))
    ft = T.finetune(T.FinetuneConfig(run_dir=str(tmp_path / "ft"), mixup=0.5, **common))
    assert pre.steps == 2 and ft.steps == 2
    built = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").glob("train-*"))
    assert built == ["train", "train"]  # pretraining and fine-tuning preprocess the split differently
    assert T.PretrainConfig().cache is False and T.FinetuneConfig(cache=True).cache  # ci profile: off by default
