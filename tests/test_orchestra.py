"""The generated dataset: layout, determinism, atomic resume, regeneration, label fractions."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from avlib import env
from avlib.data import orchestra as O
from avlib.data import synth

SPLITS = O.SPLITS
K = len(O.read_classes())


def tiny_profile(**kw) -> env.Profile:
    """A profile small enough for unit tests: 1 clip per class and split, 0.5 s, 32-px frames."""
    base = dict(name="tiny", clip_seconds=0.5, frame_size=32, image_size=32, target_length=48,
                clips_per_class={s: 1 for s in SPLITS}, mp4_clips=1)
    base.update(kw)
    return dataclasses.replace(env.profile("ci"), **base)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return O.generate(tiny_profile(), root=tmp_path_factory.mktemp("orc") / "tiny", workers=1, progress=False)


def test_classes():
    classes = O.read_classes()
    assert len(classes) >= 10
    mids = [m for m, _ in classes]
    assert len(set(mids)) == len(mids) and all(m.replace("_", "").isalpha() for m in mids)


def test_layout_is_cavmae(tiny):
    from avlib.data.datafile import read_datafile, read_label_csv

    assert (tiny / "labels.csv").read_text() == (tiny / "classes.csv").read_text()
    assert (tiny / "labels.csv").read_text().splitlines()[0] == "index,mid,display_name"
    labels = read_label_csv(tiny / "labels.csv")
    assert len(labels) == K
    for split in SPLITS:
        raw = json.loads((tiny / "datafiles" / f"{split}.json").read_text())["data"]
        assert len(raw) == K and set(raw[0]) == {"video_id", "wav", "video_path", "labels"}
        assert not Path(raw[0]["wav"]).is_absolute()  # relative to the dataset folder
        entries = read_datafile(tiny / "datafiles" / f"{split}.json")
        for e in entries:
            assert Path(e.wav).is_file()
            assert all(e.frame_path(i).is_file() for i in range(10))
            labels.index(e.labels[0])
        assert sorted(e.labels[0] for e in entries) == sorted(m for m, _ in O.read_classes())
    import soundfile as sf

    x, sr = sf.read(tiny / "audio" / "train_00000.wav")
    assert sr == 16000 and x.ndim == 1 and len(x) == 8000 and np.abs(x).max() > 0.01
    from PIL import Image

    im = Image.open(tiny / "frames" / "frame_3" / "train_00000.jpg")
    assert im.size == (32, 32) and im.mode == "RGB"
    stats = json.loads((tiny / "audio_stats.json").read_text())
    assert -12 < stats["mean"] < 2 and 1 < stats["std"] < 8
    config = json.loads((tiny / "config.json").read_text())
    assert config["counts"] == {s: K for s in SPLITS} and len(config["hash"]) == 64
    assert not (tiny / ".generating").exists()
    assert not list(tiny.rglob("*.tmp*"))  # no half-written files


def test_mp4_written(tiny):
    mp4s = list((tiny / "mp4").glob("*.mp4"))
    assert [p.name for p in mp4s] == ["val_00000.mp4"]
    from avlib.data.video import read_video

    v = read_video(mp4s[0], num_frames=10)
    frames = np.asarray(v.frames)
    assert frames.shape[0] == 10 and frames.shape[-1] == 3


def test_domains(tiny):
    metas = [json.loads(line) for line in (tiny / "clips.jsonl").read_text().splitlines()]
    assert len(metas) == 4 * K
    chorales = [c["id"] for c in synth.load_melodies()["chorales"]]
    for m in metas:
        dom = O.DOMAINS[O.SPLIT_DOMAIN[m["split"]]]
        assert m["soundfont"] in dom.soundfonts and m["style"] in dom.styles and m["melodies"] == dom.melodies
        assert m["distractor"] != m["label"] and m.get("second") != m["label"]
        assert not m["distractor"] or m.get("second") != m["distractor"]
        assert bool(m["distractor"]) == m["scene"]["distractor"]
        if "chorale" in m:  # melodic clips: the chorale belongs to the split's melody set
            assert synth.in_melody_set(chorales.index(m["chorale"]), "", dom.melodies), m["video_id"]
        else:
            assert synth.in_melody_set(-1, m["pattern"], dom.melodies), m["video_id"]
    test_dom, train_dom = O.DOMAINS["test"], O.DOMAINS["train"]
    assert (test_dom.melodies, train_dom.melodies) == ("test", "train")
    assert not set(test_dom.styles) & set(train_dom.styles)
    assert set(test_dom.soundfonts) <= set(train_dom.soundfonts)  # timbres are shared, music and pictures not


def test_melody_sets_partition_the_chorales_and_patterns():
    n = len(synth.load_melodies()["chorales"])
    train = {i for i in range(n) if synth.in_melody_set(i, "", "train")}
    test = {i for i in range(n) if synth.in_melody_set(i, "", "test")}
    assert not train & test and len(train | test) == n and 0.15 < len(test) / n < 0.25
    for table in (synth.KIT_PATTERNS, synth.CONGA_PATTERNS, synth.MARACAS_PATTERNS):
        held = [k for k in table if synth.in_melody_set(-1, k, "test")]
        assert held and len(held) < len(table)
    with pytest.raises(ValueError, match="melodies"):
        synth.in_melody_set(0, "", "nope")
    rng = np.random.default_rng(0)
    for _ in range(5):
        v = synth.compose("drum_kit", rng, 2.0, melodies="test")
        assert v.info["pattern"] in synth.TEST_PATTERNS["kit"]


def test_distractor_share():
    cfg = O.OrchestraConfig.from_profile(env.profile("ci"))
    share = np.mean([bool(O.make_clip(cfg, "unlabeled", i).meta["distractor"]) for i in range(40)])
    assert 0.05 < share < 0.5  # distractor_p = 0.25: most frames show one instrument


def test_make_clip_is_a_function_of_its_index():
    cfg = O.OrchestraConfig.from_profile(tiny_profile())
    a, b = O.make_clip(cfg, "train", 3), O.make_clip(cfg, "train", 3)
    assert np.array_equal(a.audio, b.audio) and a.meta == b.meta
    assert np.array_equal(a.frames(32), b.frames(32))
    assert a.label == O.read_classes()[3][0]
    c = O.make_clip(cfg, "unlabeled", 3)
    assert not np.array_equal(a.audio, c.audio)
    other_seed = O.make_clip(dataclasses.replace(cfg, seed=1), "train", 3)
    assert not np.array_equal(a.audio, other_seed.audio)


def test_sounder_follows_its_sound():
    """Across the 10 frames the sounding icon's size tracks the loudness of its own audio."""
    cfg = O.OrchestraConfig.from_profile(tiny_profile(clip_seconds=4.0))
    corr = []
    for i in range(4):
        clip = O.make_clip(cfg, "train", 2 + 13 * i)  # violins
        times = [(j + 0.5) * 0.4 for j in range(10)]
        sizes = [O.S._sprite_image(clip.scene.sounder, t, 96)[0].shape[0] for t in times]
        loud = [clip.scene.sounder.motion.at(t)[0] for t in times]
        if np.std(loud) > 0.05:
            corr.append(np.corrcoef(sizes, loud)[0, 1])
    assert corr and np.mean(corr) > 0.8


ONE_SPLIT = {"unlabeled": 0, "train": 0, "val": 1, "test": 0}


def test_reuse_resume_and_regenerate(tmp_path):
    prof = tiny_profile(clips_per_class=ONE_SPLIT, mp4_clips=0, clip_seconds=0.3)
    root = O.generate(prof, root=tmp_path / "d", workers=1, progress=False)
    before = _files(root)
    t0 = time.perf_counter()
    assert O.generate(prof, root=root, workers=1, progress=False) == root  # up to date: reused
    assert time.perf_counter() - t0 < 1.0
    # an interrupted run: one clip lost its files, a temp file is lying around, no config.json
    (root / "meta" / "val_00002.json").unlink()
    (root / "audio" / "val_00002.wav").unlink()
    (root / "frames" / "frame_7" / ".val_00002.jpg.123.tmp").write_bytes(b"partial")
    (root / "config.json").unlink()
    (root / ".generating").write_text(json.dumps({"hash": before["config.json"] and
                                                  json.loads(before["config.json"])["hash"]}))
    mtime = (root / "audio" / "val_00001.wav").stat().st_mtime_ns
    O.generate(prof, root=root, workers=1, progress=False)
    after = {k: v for k, v in _files(root).items() if ".tmp" not in k}
    assert after == before  # the same bytes, only the lost clip was redone
    assert (root / "audio" / "val_00001.wav").stat().st_mtime_ns == mtime
    # another seed: a new config hash, everything regenerated
    O.generate(prof, root=root, seed=1, workers=1, progress=False)
    assert _files(root)["audio/val_00001.wav"] != before["audio/val_00001.wav"]


def test_refuses_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("not a dataset")
    with pytest.raises(FileExistsError, match="not empty"):
        O.generate(tiny_profile(), root=tmp_path, workers=1, progress=False)
    assert (tmp_path / "mine.txt").exists()


@pytest.mark.slow
def test_ci_profile_is_byte_identical_across_runs_and_workers(tmp_path):
    a = O.generate("ci", root=tmp_path / "a", workers=1, progress=False)
    b = O.generate("ci", root=tmp_path / "b", workers=2, progress=False)
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys()
    differ = [k for k in fa if fa[k] != fb[k] and not k.startswith("mp4/")]
    assert not differ, differ[:5]
    # mp4s are for people to watch; libx264's output bytes vary between runs on some content (seen even with
    # threads=1 and YUV input converted in numpy), so they are compared by their decoded frames
    from avlib.data.video import read_video

    for k in (k for k in fa if k.startswith("mp4/")):
        va, vb = (np.asarray(read_video(r / k, num_frames=4).frames, dtype=np.float32) for r in (a, b))
        assert va.shape == vb.shape and np.abs(va - vb).mean() < 3.0
    n_clips = sum(env.profile("ci").clips_per_class.values()) * K
    assert len(list((a / "audio").glob("*.wav"))) == n_clips


def test_main_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AVLIB_DATA", str(tmp_path))
    monkeypatch.setattr(env, "_PROFILES", {**env._PROFILES, "tiny": tiny_profile(mp4_clips=0,
                                                                                  clips_per_class=ONE_SPLIT)})
    assert O.main(["--profile", "tiny", "--workers", "1"]) == 0
    assert "orchestra ready" in capsys.readouterr().out
    assert (tmp_path / "tiny" / "config.json").is_file()
    assert os.listdir(tmp_path) == ["tiny"]
