"""avlib.data.video: write_mp4, read_video, extract_clip, extract_videos (mp4s written here with PyAV)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

import avlib.audio as A
from avlib.data.datafile import read_datafile, write_label_csv
from avlib.data.dataset import AVDataset, AVDatasetConfig
from avlib.data.video import NoAudioError, extract_clip, extract_videos, read_video, write_mp4

STEP = 12


def ramp_frames(n: int, h: int = 32, w: int = 48) -> np.ndarray:
    """[n, h, w, 3] uint8 grey frames whose brightness encodes the frame index: 12 * (i % 20)."""
    fr = np.zeros((n, h, w, 3), np.uint8)
    fr[...] = (STEP * (np.arange(n) % 20))[:, None, None, None]
    return fr


def tone(freq: float, seconds: float, sr: int) -> np.ndarray:
    return (0.4 * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def write_stereo_mp4(path: Path, frames: np.ndarray, left: np.ndarray, right: np.ndarray, sr: int, fps: int):
    """An mp4 with a stereo AAC track at ``sr`` (write_mp4 only writes mono)."""
    with av.open(str(path), "w", format="mp4") as c:
        vs = c.add_stream("libx264", rate=Fraction(fps))
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        aus = c.add_stream("aac", rate=sr)
        aus.layout = "stereo"
        for f in frames:
            c.mux(vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(vs.encode())
        st = np.stack([left, right]).astype(np.float32)  # [2, S]
        for pts in range(0, st.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(st[:, pts:pts + 1024]), format="fltp",
                                            layout="stereo")
            af.sample_rate, af.pts = sr, pts
            c.mux(aus.encode(af))
        c.mux(aus.encode())
    return path


def red_index(frames: np.ndarray) -> np.ndarray:
    """The frame index encoded by :func:`ramp_frames`."""
    return np.round(frames[..., 0].astype(float).mean((1, 2)) / STEP).astype(int)


# ------------------------------------------------------------------------------------------------------------
# write_mp4 / read_video
# ------------------------------------------------------------------------------------------------------------
def test_write_and_read_roundtrip(tmp_path):
    p = write_mp4(tmp_path / "sub" / "v.mp4", ramp_frames(20), tone(440, 2.0, 16000), 16000, 10.0)
    assert p.is_file()
    with av.open(str(p)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.audio[0].codec_context.name == "aac"
        assert c.streams.video[0].format.name == "yuv420p" and c.streams.audio[0].channels == 1
    d = read_video(p)
    assert d.frames.shape == (20, 32, 48, 3) and d.frames.dtype == np.uint8
    assert np.array_equal(red_index(d.frames), np.arange(20))
    assert np.allclose(d.frame_times, np.arange(20) / 10)
    assert d.audio is not None and abs(d.audio.numel() - 32000) < 1100  # AAC pads up to one frame
    ref = torch.from_numpy(tone(440, 2.0, 16000))
    n = min(32000, d.audio.numel())
    corr = np.corrcoef(d.audio[:n].numpy(), ref[:n].numpy())[0, 1]
    assert corr > 0.99  # no lag, same tone


def test_write_mp4_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_mp4(tmp_path / "a.mp4", ramp_frames(2, 31, 48), None, 16000, 5)
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(tmp_path / "a.mp4", ramp_frames(2).astype(np.float32), None, 16000, 5)
    with pytest.raises(ValueError, match="mono"):
        write_mp4(tmp_path / "a.mp4", ramp_frames(2), np.zeros((2, 100), np.float32), 16000, 5)


def test_read_video_evenly_spaced_frames_and_resize(tmp_path):
    p = write_mp4(tmp_path / "v.mp4", ramp_frames(40, 40, 64), tone(300, 4.0, 16000), 16000, 10.0)
    d = read_video(p, num_frames=10, frame_size=24)
    assert d.frames.shape == (10, 24, 24, 3)
    centres = np.array([2, 6, 10, 14, 18, 22, 26, 30, 34, 38])  # frames at the centres of 10 equal segments
    assert np.array_equal(red_index(d.frames), centres % 20)
    assert np.allclose(d.frame_times, centres / 10)
    d2 = read_video(p, num_frames=10, start=1.0, max_seconds=2.0)
    assert np.allclose(d2.frame_times, np.arange(11, 31, 2) / 10)
    assert d2.audio.numel() == 32000 and d2.duration == pytest.approx(2.0)


def test_read_video_errors(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.mp4"):
        read_video(tmp_path / "empty.mp4")
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    with pytest.raises(ValueError, match="corrupt.mp4"):
        read_video(tmp_path / "corrupt.mp4")
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        read_video(tmp_path / "nope.mp4")
    sf.write(tmp_path / "sound.wav", tone(440, 0.5, 16000), 16000)
    with pytest.raises(ValueError, match="no video stream"):
        read_video(tmp_path / "sound.wav")


# ------------------------------------------------------------------------------------------------------------
# extract_clip
# ------------------------------------------------------------------------------------------------------------
def test_extract_clip_44k_stereo(tmp_path):
    sr = 44100
    p = write_stereo_mp4(tmp_path / "st.mp4", ramp_frames(20), tone(440, 2.0, sr), tone(1000, 2.0, sr) * 0.5,
                         sr, 10)
    e = extract_clip(p, tmp_path / "ds", clip_seconds=2.0, frame_size=32, labels="/m/a,/m/b")
    assert e.video_id == "st" and e.labels == ("/m/a", "/m/b")
    info = sf.info(e.wav)
    assert info.samplerate == 16000 and info.channels == 1 and info.frames == 32000
    w = A.load_wav(e.wav)
    spec = torch.fft.rfft(w.double()).abs()  # 0.5-Hz bins
    assert spec[880] > 20 * spec[1400] and spec[2000] > 20 * spec[1400]  # both channels, resampled correctly
    for i in range(10):
        assert e.frame_path(i).is_file()
    from PIL import Image

    assert Image.open(e.frame_path(0)).size == (32, 32)


def test_extract_clip_short_is_padded(tmp_path):
    p = write_mp4(tmp_path / "short.mp4", ramp_frames(5), tone(440, 1.0, 16000), 16000, 5.0)
    e = extract_clip(p, tmp_path / "ds", clip_seconds=4.0, frame_size=32)
    w, sr = sf.read(e.wav)
    assert sr == 16000 and len(w) == 64000
    assert np.abs(w[:15000]).max() > 0.3 and np.abs(w[17000:]).max() == 0  # zero padding after 1 s
    from PIL import Image

    red = red_index(np.stack([np.asarray(Image.open(e.frame_path(i))) for i in range(10)])).tolist()
    assert red == sorted(red) and red[0] == 0 and red[-1] == 4  # all 10 frames spread over the 1-s video


def test_extract_clip_long_is_cropped(tmp_path):
    sr = 16000
    audio = np.concatenate([tone(440, 3.0, sr), tone(2000, 57.0, sr)])  # 60 s; the tone changes at 3 s
    p = write_mp4(tmp_path / "long.mp4", ramp_frames(120, 16, 16), audio, sr, 2.0)  # 60 s at 2 fps
    e = extract_clip(p, tmp_path / "ds", clip_seconds=2.0, frame_size=16)
    w = A.load_wav(e.wav)
    assert w.numel() == 32000
    spec = torch.fft.rfft(w.double()).abs()
    assert spec[880] > 50 * spec[4000]  # only the first 2 s (440 Hz) kept
    from PIL import Image

    red = red_index(np.stack([np.asarray(Image.open(e.frame_path(i))) for i in range(10)]))
    assert red.max() <= 3 and red.min() == 0  # frames from the first 2 s only (frames 0..3 at 2 fps)


def test_extract_clip_without_audio(tmp_path):
    p = write_mp4(tmp_path / "mute.mp4", ramp_frames(10), None, 16000, 5.0)
    with pytest.raises(NoAudioError, match="mute.mp4.*no audio track"):
        extract_clip(p, tmp_path / "ds")


# ------------------------------------------------------------------------------------------------------------
# extract_videos
# ------------------------------------------------------------------------------------------------------------
def test_extract_videos_skips_counts_and_feeds_the_dataset(tmp_path):
    vids = tmp_path / "videos"
    vids.mkdir()
    for i, f in enumerate((300, 600, 900)):
        write_mp4(vids / f"good{i}.mp4", ramp_frames(10), tone(f, 1.0, 16000), 16000, 10.0)
    write_mp4(vids / "mute.mp4", ramp_frames(10), None, 16000, 10.0)
    (vids / "broken.mp4").write_bytes(b"not a video at all")
    (vids / "notes.txt").write_text("ignored: not a video extension")
    root = tmp_path / "ds"
    with pytest.warns(UserWarning, match="skipped") as rec:
        rep = extract_videos(vids, root, "custom", labels={"good0": "/m/a", "good1": ["/m/b"]},
                             clip_seconds=1.0,
                             frame_size=32, progress=False)
    assert len(rec) == 2
    assert [e.video_id for e in rep.entries] == ["good0", "good1", "good2"]
    assert rep.no_audio == [vids / "mute.mp4"] and [p.name for p, _ in rep.failed] == ["broken.mp4"]
    assert "3 clips" in rep.summary() and "1 without audio" in rep.summary()
    entries = read_datafile(root / "datafiles" / "custom.json")
    assert [e.labels for e in entries] == [("/m/a",), ("/m/b",), ()]
    raw = (root / "datafiles" / "custom.json").read_text()
    assert str(root) not in raw  # stored relative to the dataset root
    write_label_csv(root / "labels.csv", ["/m/a", "/m/b"], ["A", "B"])
    ds = AVDataset(root / "datafiles" / "custom.json",
                   cfg=AVDatasetConfig(target_length=96, image_size=32, stats=A.AUDIOSET_STATS))
    it = ds[1]
    assert it["audio"].shape == (96, 128) and it["video"].shape == (3, 32, 32)
    assert it["label"].tolist() == [0.0, 1.0]
    # appending a second run keeps earlier clips
    write_mp4(tmp_path / "extra.mp4", ramp_frames(10), tone(500, 1.0, 16000), 16000, 10.0)
    extract_videos([tmp_path / "extra.mp4"], root, "custom", clip_seconds=1.0, frame_size=32, progress=False)
    assert len(read_datafile(root / "datafiles" / "custom.json")) == 4


def test_extract_videos_strict_and_duplicates(tmp_path):
    write_mp4(tmp_path / "mute.mp4", ramp_frames(4), None, 16000, 4.0)
    with pytest.raises(NoAudioError):
        extract_videos([tmp_path / "mute.mp4"], tmp_path / "ds", strict=True, progress=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        write_mp4(tmp_path / d / "same.mp4", ramp_frames(4), tone(440, 0.5, 16000), 16000, 4.0)
    with pytest.raises(ValueError, match="same"):
        extract_videos([tmp_path / "a" / "same.mp4", tmp_path / "b" / "same.mp4"], tmp_path / "ds",
                       progress=False)
