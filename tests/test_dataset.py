"""avlib.data.dataset.AVDataset on a tiny dataset built here (1-s tones, uniform-colour frames)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

import avlib.audio as A
import avlib.vision as V
from avlib.data.datafile import Entry, read_datafile, write_datafile, write_label_csv
from avlib.data.dataset import AVDataset, AVDatasetConfig, select_fraction, single_thread

SIZE = 32  # model input H = W
T = 112  # target_length; a 1-s clip has 98 fbank frames


def frame_colour(clip: int, frame: int) -> tuple[int, int, int]:
    return (10 + 20 * frame, 40 * clip % 250, 128)


def make_dataset(root: Path, n: int = 6, k: int = 3, labels=None) -> Path:
    """n clips; clip c: class c % k (or labels[c]), a tone, 10 uniform frames coloured by (clip, frame)."""
    labels = labels or [(f"/m/{c % k}",) for c in range(n)]
    entries = []
    for c in range(n):
        vid = f"clip{c}"
        t = np.arange(16000) / 16000
        wave = (0.3 * np.sin(2 * np.pi * 300 * (c % k + 1) * t)).astype(np.float32)
        (root / "audio").mkdir(parents=True, exist_ok=True)
        sf.write(root / "audio" / f"{vid}.wav", wave, 16000, subtype="PCM_16")
        for f in range(10):
            p = root / "frames" / f"frame_{f}" / f"{vid}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (48, 40), frame_colour(c, f)).save(p, quality=95)
        entries.append(Entry(vid, str(root / "audio" / f"{vid}.wav"), str(root / "frames"), labels[c]))
    mids = sorted({m for lab in labels for m in lab} | {f"/m/{i}" for i in range(k)})
    write_label_csv(root / "labels.csv", mids)
    fbs = [A.fbank(A.load_wav(e.wav)) for e in entries]
    A.dataset_stats(fbs).save(root / "audio_stats.json")
    return write_datafile(root / "datafiles" / "train.json", entries)


@pytest.fixture(scope="module")
def datafile(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds"))


def cfg(**kw) -> AVDatasetConfig:
    return AVDatasetConfig(**{"target_length": T, "image_size": SIZE, **kw})


def mean_rgb(video: torch.Tensor) -> torch.Tensor:
    """Mean colour (0..255) of a normalised frame [3, H, W] (or [..., 3, H, W])."""
    return V.denormalize(video).mean((-1, -2)) * 255


# ------------------------------------------------------------------------------------------------------------
def test_eval_item_keys_shapes_and_content(datafile):
    ds = AVDataset(datafile, cfg=cfg())
    assert len(ds) == 6 and ds.num_classes == 3
    it = ds[4]
    assert set(it) == {"audio", "video", "label", "index", "video_id"}
    assert it["audio"].shape == (T, 128) and it["audio"].dtype == torch.float32
    assert it["video"].shape == (3, SIZE, SIZE)
    assert torch.equal(it["label"], torch.tensor([0.0, 1.0, 0.0]))
    assert it["index"] == 4 and it["video_id"] == "clip4"
    middle = torch.tensor(frame_colour(4, 5), dtype=torch.float32)
    assert (mean_rgb(it["video"]) - middle).abs().max() < 3
    # padding after normalisation: padded frames are 0 (= the dataset mean), not the reference's +1.13
    assert A.num_frames(16000) == 98
    assert (it["audio"][98:] == 0).all() and it["audio"][:98].abs().sum() > 0
    stats = A.AudioStats.load(datafile.parent.parent / "audio_stats.json")
    raw = A.fbank(A.load_wav(ds.entries[4].wav))
    assert torch.allclose(it["audio"][:98], (raw - stats.mean) / stats.std)
    again = ds[4]
    assert torch.equal(again["audio"], it["audio"]) and torch.equal(again["video"], it["video"])


def test_modalities_not_asked_for_are_not_decoded(tmp_path):
    df = make_dataset(tmp_path / "ds", n=3)
    shutil.rmtree(tmp_path / "ds" / "frames")
    a = AVDataset(df, cfg=cfg(modalities=("audio",)))[0]
    assert "video" not in a and a["audio"].shape == (T, 128)
    with pytest.raises(FileNotFoundError, match=r"frame_5.clip0\.jpg"):
        AVDataset(df, cfg=cfg())[0]
    df2 = make_dataset(tmp_path / "ds2", n=3)
    shutil.rmtree(tmp_path / "ds2" / "audio")
    (tmp_path / "ds2" / "audio_stats.json").unlink()  # not needed without audio
    v = AVDataset(df2, cfg=cfg(modalities=("video",)))[1]
    assert "audio" not in v and v["video"].shape == (3, SIZE, SIZE)


def test_all_frames_in_order(datafile):
    v = AVDataset(datafile, cfg=cfg(frames="all"))[2]["video"]
    assert v.shape == (10, 3, SIZE, SIZE)
    red = mean_rgb(v)[:, 0]
    expect = torch.tensor([frame_colour(2, f)[0] for f in range(10)], dtype=torch.float32)
    assert torch.allclose(red, expect, atol=3)


def test_train_randomness_is_per_seed_epoch_index(datafile):
    ds = AVDataset(datafile, cfg=cfg(train=True, noise=True, freqm=24, timem=30), seed=0)
    first = [ds[i] for i in range(len(ds))]
    rev = [ds[i] for i in reversed(range(len(ds)))][::-1]  # access order does not matter
    assert all(torch.equal(a["audio"], b["audio"]) and torch.equal(a["video"], b["video"])
               for a, b in zip(first, rev, strict=True))
    frames_e0 = [int(round(float(mean_rgb(it["video"])[0] - 10) / 20)) for it in first]
    ds.set_epoch(1)
    e1 = [ds[i] for i in range(len(ds))]
    assert any(not torch.equal(a["audio"], b["audio"]) for a, b in zip(first, e1, strict=True))
    frames = frames_e0 + [int(round(float(mean_rgb(it["video"])[0] - 10) / 20)) for it in e1]
    assert len(set(frames)) > 2 and all(0 <= f <= 9 for f in frames)  # random frames, not always the middle
    other = AVDataset(datafile, cfg=cfg(train=True, noise=True, freqm=24, timem=30), seed=1)
    assert not torch.equal(other[0]["audio"], first[0]["audio"])
    ev = AVDataset(datafile, cfg=cfg())
    assert not torch.equal(ev[0]["audio"], first[0]["audio"])  # train augments, eval does not


def test_items_decode_single_threaded_and_restore_threads(datafile):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with single_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        ds = AVDataset(datafile, cfg=cfg())
        a = ds[0]
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert torch.equal(ds[0]["audio"], a["audio"])
    finally:
        torch.set_num_threads(before)


def test_label_smoothing(datafile):
    y = AVDataset(datafile, cfg=cfg(label_smoothing=0.1))[1]["label"]
    assert torch.allclose(y, torch.tensor([0.1 / 3, 0.9, 0.1 / 3]))


def test_mixup_uses_partner_frames_and_mixes_labels(tmp_path):
    n = 5
    df = make_dataset(tmp_path / "ds", n=n, k=n)  # one class per clip: the label reveals the partner
    ds = AVDataset(df, cfg=cfg(train=True, mixup=1.0))
    t = V.eval_transform(SIZE)
    checked = 0
    for i in range(n):
        it = ds[i]
        y = it["label"]
        assert abs(float(y.sum()) - 1) < 1e-6 and y[i] > 0
        others = [j for j in range(n) if j != i and y[j] > 0]
        if not others:  # partner was the clip itself
            continue
        (j,) = others
        lam = float(y[i])
        assert 0 < lam < 1
        imgs = {(c, f): t(V.load_frame(ds.entries[c].frame_path(f))) for c in (i, j) for f in range(10)}
        match = any(torch.allclose(it["video"], lam * imgs[i, f1] + (1 - lam) * imgs[j, f2], atol=1e-5)
                    for f1 in range(10) for f2 in range(10))
        assert match, "mixed frame must combine the clip's frame with the partner's own frame"
        w = A.mix_waves(A.load_wav(ds.entries[i].wav), A.load_wav(ds.entries[j].wav), lam)
        expect = A.pad_or_crop(A.normalize(A.fbank(w), ds.stats), T)
        assert torch.allclose(it["audio"], expect, atol=1e-5)
        checked += 1
    assert checked >= 2


def test_label_fraction(tmp_path):
    df = make_dataset(tmp_path / "ds", n=12, k=3)
    ds = AVDataset(df, cfg=cfg(label_fraction=0.5), seed=0)
    assert len(ds) == 6 and ds.targets.sum(0).tolist() == [2.0, 2.0, 2.0]
    assert [e.video_id for e in AVDataset(df, cfg=cfg(label_fraction=0.5), seed=0).entries] == \
        [e.video_id for e in ds.entries]
    assert len(AVDataset(df, cfg=cfg(label_fraction=0.01)).entries) == 3  # at least one per class
    keep = select_fraction(torch.tensor([[1.0, 0], [0, 0], [0, 0], [0, 1]]), 0.5)
    assert len(keep) == 3 and keep == sorted(keep)
    targets = torch.eye(4).repeat(10, 1)  # [40, 4]
    small, large = select_fraction(targets, 0.2, seed=3), select_fraction(targets, 0.6, seed=3)
    assert len(small) == 8 and len(large) == 24 and set(small) <= set(large)  # nested subsets


def test_unknown_label_raises_at_construction(tmp_path):
    df = make_dataset(tmp_path / "ds", n=2)
    entries = read_datafile(df)
    write_datafile(df, [entries[0], Entry("weird", entries[1].wav, entries[1].video_path, ("/m/nope",))])
    with pytest.raises(KeyError, match=r"weird.*'/m/nope'"):
        AVDataset(df, cfg=cfg())


def test_missing_stats_and_labels_are_clear_errors(tmp_path):
    df = make_dataset(tmp_path / "ds", n=2)
    (tmp_path / "ds" / "audio_stats.json").unlink()
    with pytest.raises(FileNotFoundError, match="audio_stats.json"):
        AVDataset(df, cfg=cfg())
    assert AVDataset(df, cfg=cfg(stats=A.AUDIOSET_STATS))[0]["audio"].shape == (T, 128)
    with pytest.raises(FileNotFoundError, match="other.csv"):
        AVDataset(df, tmp_path / "other.csv", cfg=cfg(stats=A.AUDIOSET_STATS))


def test_bad_media_errors_name_the_file(tmp_path):
    df = make_dataset(tmp_path / "ds", n=3)
    root = tmp_path / "ds"
    (root / "audio" / "clip1.wav").write_bytes(b"RIFF....garbage")
    (root / "frames" / "frame_5" / "clip2.jpg").unlink()
    ds = AVDataset(df, cfg=cfg())
    with pytest.raises(ValueError, match=r"clip1\.wav"):
        ds[1]
    with pytest.warns(UserWarning, match=r"frame_5.clip2\.jpg is missing; using frame_4"):
        ds[2]  # a missing frame falls back to the nearest one (tests/test_inputs.py has the details)
    assert ds.missing_frames == {("clip2", 5): 4}
    with pytest.raises(IndexError):
        ds[3]
    e = read_datafile(df)[0]
    write_datafile(df, [Entry(e.video_id, "", "", e.labels)])
    with pytest.raises(ValueError, match="empty 'wav'"):
        AVDataset(df, cfg=cfg())[0]
    with pytest.raises(ValueError, match="empty 'video_path'"):
        AVDataset(df, cfg=cfg(modalities=("video",)))[0]


def test_grayscale_and_rgba_frames(tmp_path):
    df = make_dataset(tmp_path / "ds", n=2)
    fdir = tmp_path / "ds" / "frames" / "frame_5"
    Image.open(fdir / "clip0.jpg").convert("L").save(fdir / "clip0.jpg")
    Image.open(fdir / "clip1.jpg").convert("RGBA").save(fdir / "clip1.png")
    (fdir / "clip1.png").rename(fdir / "clip1.jpg")  # a PNG with a .jpg name still decodes
    ds = AVDataset(df, cfg=cfg())
    g, r = ds[0]["video"], ds[1]["video"]
    assert g.shape == r.shape == (3, SIZE, SIZE)
    rgb = mean_rgb(g)
    assert (rgb - rgb.mean()).abs().max() < 2  # grey: equal channels


def test_config_validation():
    with pytest.raises(ValueError, match="multiple of 16"):
        AVDatasetConfig(target_length=100)
    with pytest.raises(ValueError, match="modalities"):
        AVDatasetConfig(modalities=("audio", "text"))
    with pytest.raises(ValueError, match="frames"):
        AVDatasetConfig(frames="first")
    with pytest.raises(ValueError, match="mixup"):
        AVDatasetConfig(mixup=1.5)
    c = AVDatasetConfig(stats={"mean": -4.0, "std": 4.0})
    assert c.stats == A.AudioStats(-4.0, 4.0) and c.frame_mode == "middle"
    assert AVDatasetConfig(train=True).frame_mode == "random"
    assert c.to_dict()["modalities"] == ["audio", "video"]


def test_collates_with_dataloader(datafile):
    ds = AVDataset(datafile, cfg=cfg(frames="all"))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["audio"].shape == (4, T, 128) and batch["video"].shape == (4, 10, 3, SIZE, SIZE)
    assert batch["label"].shape == (4, 3) and batch["video_id"] == ["clip0", "clip1", "clip2", "clip3"]


def test_same_items_with_worker_processes(datafile):
    ds = AVDataset(datafile, cfg=cfg(train=True, noise=True, mixup=0.5))
    ds.set_epoch(3)
    ref = [ds[i] for i in range(len(ds))]
    dl = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2)
    for a, b in zip(ref, dl, strict=True):
        assert torch.equal(a["audio"], b["audio"][0]) and torch.equal(a["video"], b["video"][0])


def test_frame_ids_rule():
    import pytest as _pytest

    from avlib.data.dataset import frame_ids

    assert frame_ids("all") == list(range(10))
    assert frame_ids("middle") == [5]
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    draws = [frame_ids("random", g1)[0] for _ in range(200)]
    assert draws == [frame_ids("random", g2)[0] for _ in range(200)]
    assert set(draws) == set(range(10))
    with _pytest.raises(ValueError, match="unknown frame mode"):
        frame_ids("first")


def test_select_fraction_is_stratified_and_nested():
    import pytest as _pytest

    targets = torch.nn.functional.one_hot(torch.arange(60) % 3, 3).float()  # 20 clips per class
    subsets = {f: select_fraction(targets, f, seed=0) for f in (0.01, 0.05, 0.1, 0.5, 1.0)}
    assert subsets[1.0] == list(range(60))
    for f, keep in subsets.items():
        counts = torch.bincount(torch.tensor(keep) % 3, minlength=3).tolist()
        assert set(counts) == {max(1, round(f * 20))}, (f, counts)
    sets = {f: set(k) for f, k in subsets.items()}
    assert sets[0.01] <= sets[0.05] <= sets[0.1] <= sets[0.5] <= sets[1.0]
    assert select_fraction(targets, 0.1, seed=0) == subsets[0.1]
    assert select_fraction(targets, 0.1, seed=1) != subsets[0.1]
    with _pytest.raises(ValueError, match="label fraction"):
        select_fraction(targets, 0.0)
