"""Awkward real-world inputs (issue 15): each one works correctly or fails with a clear message naming the file.

Every file is built here (PyAV, soundfile, Pillow); no media is committed. The predict command line runs on a tiny
untrained model saved in a temporary folder (its predictions are meaningless; only the plumbing is tested).
"""

from __future__ import annotations

import io
import json
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

import avlib.audio as A
import avlib.vision as V
from avlib.data.datafile import Entry, read_datafile, read_label_csv, write_datafile, write_label_csv
from avlib.data.dataset import AVDataset, AVDatasetConfig
from avlib.data.video import extract_clip, extract_videos, list_videos, read_video
from avlib.media import probe
from avlib.predict import expand_inputs, load_input, main

SR = 16000
SIZE = 32  # model input H = W
T = 96  # fbank frames the tiny model sees (0.96 s)
PRE = {"sample_rate": SR, "num_mel_bins": 128, "target_length": T, "image_size": SIZE,
       "audio_stats": {"mean": -5.081, "std": 4.4849}}


def tone(freq: float, seconds: float = 1.0, sr: int = SR, amp: float = 0.4) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def half_bright(n: int = 6, h: int = 16, w: int = 32) -> np.ndarray:
    """[n, h, w, 3] uint8 frames: left half white, right half black."""
    fr = np.zeros((n, h, w, 3), np.uint8)
    fr[:, :, : w // 2] = 255
    return fr


def write_av(path: Path, frames: np.ndarray | None, tracks=(), *, sr: int = SR, fps: int = 6,
             rotation: float | None = None, fmt: str | None = None, codec: str = "aac") -> Path:
    """A media file with an optional H.264 video (``rotation``: display matrix, counter-clockwise degrees)
    and any number of audio ``tracks``, each ``(data [C, S] float32, layout)``."""
    with av.open(str(path), "w", format=fmt) as c:
        vs = None
        if frames is not None:
            vs = c.add_stream("libx264", rate=Fraction(fps))
            vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            if rotation is not None:
                vs.set_display_rotation(rotation)
        streams = []
        for _, layout in tracks:
            s = c.add_stream(codec, rate=sr)
            s.layout = layout
            streams.append(s)
        if vs is not None:
            for f in frames:
                c.mux(vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
            c.mux(vs.encode())
        for s, (data, layout) in zip(streams, tracks, strict=True):
            data = np.asarray(data, np.float32).reshape(-1, np.asarray(data).shape[-1])  # [C, S]
            step = s.codec_context.frame_size or 1024
            for pts in range(0, data.shape[1], step):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, pts:pts + step]), format="fltp",
                                                layout=layout)
                af.sample_rate, af.pts = sr, pts
                c.mux(s.encode(af))
            c.mux(s.encode())
    return path


def jpeg_bytes(w: int = 16, h: int = 16, colour=(200, 20, 20)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, "JPEG")
    return buf.getvalue()


def write_mp3_with_cover(path: Path, wave: np.ndarray) -> Path:
    """An MP3 whose ID3 tag holds a JPEG album cover (FFmpeg shows it as an attached_pic video stream)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libmp3lame", rate=SR)
        s.layout = "mono"
        v = c.add_stream("mjpeg")
        v.width, v.height, v.pix_fmt = 16, 16, "yuvj420p"
        v.disposition = av.stream.Disposition.attached_pic
        pkt = av.Packet(jpeg_bytes())
        pkt.stream, pkt.pts, pkt.dts = v, 0, 0
        c.mux(pkt)
        for pts in range(0, len(wave), 1152):
            af = av.AudioFrame.from_ndarray(wave[None, pts:pts + 1152], format="flt", layout="mono")
            af.sample_rate, af.pts = SR, pts
            c.mux(s.encode(af))
        c.mux(s.encode())
    return path


def peak_bin(wave: torch.Tensor, sr: int = SR) -> float:
    """Frequency (Hz) of the strongest spectral peak."""
    spec = torch.fft.rfft(wave.double()).abs()
    return float(spec.argmax()) * sr / wave.numel()


def rms(x) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny untrained AV classifier saved with the preprocessing predict needs."""
    from avlib.models import create_model, save_pretrained

    torch.manual_seed(0)
    model = create_model("tiny", num_classes=3, audio_length=T, img_size=SIZE)
    d = tmp_path_factory.mktemp("tiny_model")
    return save_pretrained(model, d, extra={"mode": "multimodal", "class_names": ["a", "b", "c"],
                                            "preprocessing": dict(PRE)})


# ------------------------------------------------------------------------------------------------------------
# silent garbage
# ------------------------------------------------------------------------------------------------------------
def test_rotation_flag_is_honoured(tmp_path):
    # a phone video: stored landscape (left half white), display matrix "rotate 90" (clockwise)
    p = write_av(tmp_path / "phone.mov", half_bright(), [(tone(440)[None], "mono")], rotation=-90, fmt="mov")
    d = read_video(p)
    assert d.frames.shape == (6, 32, 16, 3)  # upright: portrait
    lum = d.frames[0, ..., 0].astype(float)
    assert lum[:14].mean() > 200 and lum[18:].mean() < 50  # the left half went to the top
    e = extract_clip(p, tmp_path / "ds", clip_seconds=1.0, frame_size=16)
    img = np.asarray(Image.open(e.frame_path(3)))[..., 0].astype(float)  # centre crop of the upright frame
    assert img[:6].mean() > 200 and img[10:].mean() < 50 and abs(img[:, :8].mean() - img[:, 8:].mean()) < 20
    _, frames = load_input(p, PRE)  # predict: the same upright frames
    lum = V.denormalize(frames[0])[0]  # [S, S]
    assert lum[:12].mean() > 0.8 and lum[20:].mean() < 0.2
    # without the flag the same file stays landscape
    plain = read_video(write_av(tmp_path / "plain.mp4", half_bright(), [(tone(440)[None], "mono")]))
    assert plain.frames.shape == (6, 16, 32, 3)


def test_mp3_with_cover_art_is_audio_not_video(tmp_path):
    p = write_mp3_with_cover(tmp_path / "song.mp3", tone(440))
    with av.open(str(p)) as c:
        assert len(c.streams.video) == 1  # the cover is there, as an attached picture
    assert probe(p) == "audio"
    with pytest.raises(ValueError, match=r"song\.mp3 has no video stream \(only cover art"):
        read_video(p)
    w = A.load_wav(p)
    assert abs(peak_bin(w) - 440) < 3
    audio, frames = load_input(p, PRE)
    assert frames is None and audio.shape == (T, 128)


def test_stereo_that_cancels_uses_the_left_channel_with_a_warning(tmp_path):
    x = tone(440)
    sf.write(tmp_path / "cancel.wav", np.stack([x, -x], 1), SR)
    with pytest.warns(UserWarning, match=r"cancel\.wav.*channels cancel.*left channel"):
        w = A.load_wav(tmp_path / "cancel.wav")
    assert rms(w) == pytest.approx(rms(x), rel=1e-3)
    p = write_av(tmp_path / "cancel.mp4", half_bright(), [(np.stack([x, -x]), "stereo")])
    with pytest.warns(UserWarning, match="channels cancel"):
        d = read_video(p)
    assert rms(d.audio[2000:14000]) == pytest.approx(rms(x), rel=0.1)
    with warnings.catch_warnings():  # ordinary stereo: the mean, no warning
        warnings.simplefilter("error")
        sf.write(tmp_path / "ok.wav", np.stack([x, 0.5 * x], 1), SR)
        assert torch.allclose(A.load_wav(tmp_path / "ok.wav"), torch.from_numpy(0.75 * x), atol=1e-4)


def test_first_non_silent_audio_track_is_used(tmp_path):
    silent, x = np.zeros((1, SR), np.float32), tone(660)[None]
    p = write_av(tmp_path / "two.mkv", half_bright(), [(silent, "mono"), (x, "mono")], fmt="matroska")
    with pytest.warns(UserWarning, match=r"two\.mkv: audio track 0 is silent; using track 1"):
        d = read_video(p)
    assert rms(d.audio) > 0.2 and abs(peak_bin(d.audio) - 660) < 3
    with pytest.warns(UserWarning, match="track 0 is silent"):
        e = extract_clip(p, tmp_path / "ds", clip_seconds=1.0, frame_size=16)
    assert rms(sf.read(e.wav)[0]) > 0.2  # not a silent WAV
    with pytest.warns(UserWarning, match="track 0 is silent"):
        assert abs(peak_bin(A.load_wav(p)) - 660) < 3  # load_wav (FFmpeg path) follows the same rule
    q = write_av(tmp_path / "both.mkv", half_bright(), [(tone(440)[None], "mono"), (x, "mono")],
                 fmt="matroska")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert abs(peak_bin(read_video(q).audio) - 440) < 3  # both have sound: the first track, silently


def test_nan_and_inf_samples_fail_naming_the_file(tmp_path, model_dir, capsys):
    x = tone(440)
    x[100], x[200] = np.nan, np.inf
    sf.write(tmp_path / "nan.wav", x, SR, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"nan\.wav holds 2 NaN or infinite sample"):
        A.load_wav(tmp_path / "nan.wav")
    sf.write(tmp_path / "good.wav", tone(440), SR)
    assert main([str(tmp_path / "good.wav"), str(tmp_path / "nan.wav"), "--model", str(model_dir), "--json"]) == 1
    out, err = capsys.readouterr()
    res = json.loads(out, parse_constant=lambda c: pytest.fail(f"bare {c} in the JSON"))  # strict JSON
    assert [r["path"].endswith("good.wav") and "top" in r for r in res] == [True, False]
    assert "nan.wav" in res[1]["path"] and "NaN" in res[1]["error"]
    assert err.count("error:") == 1 and "nan.wav" in err


def test_one_downmix_rule_for_wav_and_video(tmp_path):
    left, right = tone(440, amp=0.5), tone(1000, amp=0.3)
    sf.write(tmp_path / "st.wav", np.stack([left, right], 1), SR)
    p = write_av(tmp_path / "st.mp4", half_bright(), [(np.stack([left, right]), "stereo")])
    w, v = A.load_wav(tmp_path / "st.wav"), read_video(p).audio
    expected = rms((left + right) / 2)
    assert rms(w) == pytest.approx(expected, rel=1e-3)
    assert rms(v[2000:14000]) == pytest.approx(expected, rel=0.05)  # same level (FFmpeg's mix was +3 dB)


def test_loud_surround_mix_is_scaled_not_clipped(tmp_path):
    x = tone(300, amp=1.0)
    six = np.stack([1.5 * x] * 6)  # 5.1, every channel at 1.5 (float AAC keeps it)
    p = write_av(tmp_path / "surround.mp4", half_bright(), [(six, "5.1")])
    d = read_video(p)
    assert float(d.audio.abs().max()) > 1.1  # the mean of the channels (the LFE one is band-limited by AAC)
    with pytest.warns(UserWarning, match=r"surround\.mp4: peak 1\.\d+ exceeds 1\.0 after mixing down; scaled"):
        e = extract_clip(p, tmp_path / "ds", clip_seconds=1.0, frame_size=16)
    wav = sf.read(e.wav)[0]
    assert np.abs(wav).max() <= 1.0 and np.mean(np.abs(wav) > 0.999) < 0.001  # nothing clipped
    mix = read_video(p, max_seconds=1.0).audio.numpy()
    assert np.abs(wav - mix / np.abs(mix).max()).max() < 1e-3  # the whole mix scaled to peak 1, same shape


def test_16bit_greyscale_png_is_not_white(tmp_path):
    grad = np.linspace(0, 65535, 64).astype(np.uint16)[None].repeat(8, 0)  # [8, 64] 16-bit ramp
    Image.fromarray(grad).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    img = V.load_frame(tmp_path / "deep.png")
    assert img.shape == (3, 8, 64) and img.dtype == torch.uint8
    assert img[0, 0, 0] == 0 and img[0, 0, -1] == 255 and abs(int(img[0, 0, 32]) - 132) <= 2
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])


def test_exif_orientation_is_honoured(tmp_path):
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "photo.jpg", exif=exif, quality=95)
    img = V.load_frame(tmp_path / "photo.jpg")
    assert img.shape == (3, 40, 20)  # shown upright: portrait
    assert img[0, :16].float().mean() > 200 and img[0, 24:].float().mean() < 50


def test_duplicate_display_names_are_rejected(tmp_path):
    (tmp_path / "labels.csv").write_text("index,mid,display_name\n0,/m/a,Piano\n1,/m/b,Guitar\n2,/m/c,Piano\n")
    with pytest.raises(ValueError, match=r"labels\.csv, line 4: display name 'Piano' is already used on line 2"):
        read_label_csv(tmp_path / "labels.csv")


# ------------------------------------------------------------------------------------------------------------
# ordinary files that were rejected
# ------------------------------------------------------------------------------------------------------------
def test_files_are_recognised_by_content_not_extension(tmp_path):
    x = tone(440, amp=0.3)
    opus = write_av(tmp_path / "voice.opus", None, [(tone(440, sr=48000)[None], "mono")], sr=48000, fmt="ogg",
                    codec="libopus")
    m4a = write_av(tmp_path / "song.m4a", None, [(x[None], "mono")], fmt="ipod")
    with pytest.raises(sf.LibsndfileError):
        sf.info(m4a)  # libsndfile cannot read it: load_wav falls back to FFmpeg
    for f in (opus, m4a):
        assert probe(f) == "audio"
        assert abs(peak_bin(A.load_wav(f)) - 440) < 3
        audio, frames = load_input(f, PRE)
        assert audio.shape == (T, 128) and frames is None
        assert not list_videos(tmp_path)  # audio files are not videos
    sf.write(tmp_path / "actually_a_wav.mp4", tone(440), SR, format="WAV")
    assert probe(tmp_path / "actually_a_wav.mp4") == "audio"
    audio, frames = load_input(tmp_path / "actually_a_wav.mp4", PRE)
    assert audio is not None and frames is None
    vid = write_av(tmp_path / "clip.bin", half_bright(), [(x[None], "mono")], fmt="mp4")
    assert probe(vid) == "video" and read_video(vid).frames.shape == (6, 16, 32, 3)
    assert A.load_wav(vid).numel() > 15000  # the sound of a video, by load_wav
    Image.new("RGB", (20, 20), (0, 255, 0)).save(tmp_path / "frame.dat", "PNG")
    assert probe(tmp_path / "frame.dat") == "image" and V.load_frame(tmp_path / "frame.dat")[1, 0, 0] == 255
    (tmp_path / "notes.mp4").write_text("not a video, whatever the name says")
    with pytest.raises(ValueError, match=r"notes\.mp4 is not an audio, video or image file"):
        probe(tmp_path / "notes.mp4")
    assert list_videos(tmp_path) == [vid, tmp_path / "notes.mp4"]  # by content, or a video name (-> failed)
    with pytest.raises(ValueError, match="is a folder"):
        probe(tmp_path)


def test_datafile_and_label_csv_with_bom_and_crlf(tmp_path):
    root = tmp_path / "ds"
    df = write_datafile(root / "datafiles" / "train.json", [Entry("c0", "audio/c0.wav", "frames", ("/m/a",))])
    text = df.read_text().replace("\n", "\r\n")
    df.write_bytes(b"\xef\xbb\xbf" + text.encode())  # Excel / Notepad style
    assert read_datafile(df)[0].labels == ("/m/a",)
    (root / "labels.csv").write_bytes(b"\xef\xbb\xbfindex,mid,display_name\r\n0,/m/a,\"Piano, grand\"\r\n"
                                      b"1,/m/b,Gu\xc3\xaftar\r\n")
    labels = read_label_csv(root / "labels.csv")
    assert labels.mids == ("/m/a", "/m/b") and labels.names == ("Piano, grand", "Gu\u00eftar")


def _frames_dataset(root: Path, n_frames_missing=(7,)) -> Path:
    """One clip; frame i is a uniform grey of level 20 * i; frames listed in n_frames_missing are absent."""
    root.mkdir(parents=True)
    sf.write(root / "c0.wav", tone(440), SR)
    for i in range(10):
        p = root / "frames" / f"frame_{i}" / "c0.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)  # the folder stays (empty) for a missing frame
        if i not in n_frames_missing:
            Image.new("RGB", (SIZE, SIZE), (20 * i,) * 3).save(p, quality=95)
    write_label_csv(root / "labels.csv", ["/m/a"])
    return write_datafile(root / "datafiles" / "train.json",
                          [Entry("c0", str(root / "c0.wav"), str(root / "frames"), ("/m/a",))])


def test_missing_frame_falls_back_to_the_nearest_with_a_warning_and_a_count(tmp_path):
    df = _frames_dataset(tmp_path / "ds")
    cfg = AVDatasetConfig(target_length=T, image_size=SIZE, stats=A.AUDIOSET_STATS, frames="all")
    ds = AVDataset(df, cfg=cfg)
    with pytest.warns(UserWarning, match=r"frame_7.c0\.jpg is missing; using frame_6"):
        video = ds[0]["video"]  # [10, 3, S, S]: 10-frame evaluation works
    level = V.denormalize(video).mean((1, 2, 3)) * 255  # [10]
    assert torch.allclose(level, torch.tensor([20.0 * i for i in (0, 1, 2, 3, 4, 5, 6, 6, 8, 9)]), atol=2)
    assert ds.missing_frames == {("c0", 7): 6}
    with warnings.catch_warnings():  # warned once per clip and frame, still counted
        warnings.simplefilter("error")
        ds[0]
    train = AVDataset(df, cfg=AVDatasetConfig(target_length=T, image_size=SIZE, stats=A.AUDIOSET_STATS,
                                              train=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(30):  # random-frame training: the epochs that draw frame 7 work too
            train.set_epoch(epoch)
            train[0]
    assert train.missing_frames == {("c0", 7): 6}
    none = _frames_dataset(tmp_path / "none", n_frames_missing=range(10))
    with pytest.raises(FileNotFoundError, match=r"frame_5.c0\.jpg does not exist, nor any other"):
        AVDataset(none, cfg=AVDatasetConfig(target_length=T, image_size=SIZE, stats=A.AUDIOSET_STATS))[0]


# ------------------------------------------------------------------------------------------------------------
# unclear errors and lost work
# ------------------------------------------------------------------------------------------------------------
def bomb_jpeg(path: Path, w: int = 60000, h: int = 60000) -> Path:
    """A small JPEG whose header (SOF0) claims ``w x h`` pixels."""
    data = bytearray(jpeg_bytes(16, 16))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = h.to_bytes(2, "big") + w.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_is_a_clear_error_and_predict_keeps_going(tmp_path, model_dir, capsys):
    bomb = bomb_jpeg(tmp_path / "bomb.jpg")
    with pytest.raises(ValueError, match=r"bomb\.jpg claims a size beyond Pillow's safety limit"):
        V.load_frame(bomb)
    sf.write(tmp_path / "a.wav", tone(440), SR)
    mp4 = write_av(tmp_path / "b.mp4", half_bright(), [(tone(300)[None], "mono")])
    assert main([str(tmp_path / "a.wav"), str(bomb), str(mp4), "--model", str(model_dir)]) == 1
    out, err = capsys.readouterr()
    assert "a.wav  (missingaudioonly)" in out and "b.mp4  (multimodal)" in out  # the good files' results
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "bomb.jpg" in lines[0] and "safety limit" in lines[0]


def test_tiny_wav_error_names_the_file(tmp_path):
    sf.write(tmp_path / "tiny.wav", np.full(10, 0.1, np.float32), SR)
    with pytest.raises(ValueError, match=r"tiny\.wav holds only 10 samples .* at least one 25-ms"):
        A.load_wav(tmp_path / "tiny.wav")
    with pytest.raises(ValueError, match=r"tiny\.wav"):
        load_input(tmp_path / "tiny.wav", PRE)


def test_large_jpeg_is_decoded_at_reduced_size(tmp_path):
    Image.new("RGB", (1600, 1200), (10, 200, 30)).save(tmp_path / "big.jpg", quality=80)
    full = V.load_frame(tmp_path / "big.jpg")
    small = V.load_frame(tmp_path / "big.jpg", size=200)  # draft mode: 1/4 scale, shorter side 300 >= 200
    assert full.shape == (3, 1200, 1600) and small.shape == (3, 300, 400)
    assert (small.float().mean((1, 2)) - full.float().mean((1, 2))).abs().max() < 3
    assert V.load_frame(tmp_path / "big.jpg", size=700).shape == (3, 1200, 1600)  # 1/2 would be too small


def test_predict_accepts_a_folder_and_a_glob(tmp_path, model_dir, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    sf.write(clips / "a.wav", tone(440), SR)
    sf.write(clips / "b.flac", tone(880), SR)
    (clips / ".hidden").write_text("left out")
    files, problems = expand_inputs([str(clips), str(clips / "*.flac"), str(tmp_path / "*.none")])
    assert files == [clips / "a.wav", clips / "b.flac", clips / "b.flac"]
    assert problems == [(str(tmp_path / "*.none"), "no file matches this pattern")]
    assert main([str(clips), "--model", str(model_dir), "--json"]) == 0
    assert [Path(r["path"]).name for r in json.loads(capsys.readouterr().out)] == ["a.wav", "b.flac"]
    assert main([str(clips / "*.wav"), str(tmp_path / "*.none"), "--model", str(model_dir)]) == 1
    out, err = capsys.readouterr()
    assert "a.wav" in out and "*.none: no file matches" in err


def test_small_image_is_upscaled_with_a_warning(tmp_path):
    Image.new("RGB", (6, 6), (255, 0, 0)).save(tmp_path / "icon.png")
    with pytest.warns(UserWarning, match=r"icon\.png: image of 6x6 pixels is upscaled to 32x32"):
        _, frames = load_input(tmp_path / "icon.png", PRE)
    assert frames.shape == (1, 3, SIZE, SIZE)


def test_extract_videos_skips_counts_and_prints_the_list(tmp_path, capsys):
    vids = tmp_path / "videos"
    vids.mkdir()
    write_av(vids / "good.mp4", half_bright(), [(tone(440)[None], "mono")])
    write_av(vids / "mute.mp4", half_bright(), [])
    (vids / "html.mp4").write_text("<html>404 not found</html>")
    write_mp3_with_cover(vids / "song.mp3", tone(440))  # audio, not a video: ignored
    with pytest.warns(UserWarning, match="skipped"):
        rep = extract_videos(vids, tmp_path / "ds", clip_seconds=1.0, frame_size=16, progress=False)
    assert [e.video_id for e in rep.entries] == ["good"]
    assert rep.no_audio == [vids / "mute.mp4"] and [p.name for p, _ in rep.failed] == ["html.mp4"]
    assert rep.ignored == [vids / "song.mp3"] and "ignored 1 files" in rep.summary()
    out = capsys.readouterr().out
    assert "1 clips written" in out and "mute.mp4: no audio track" in out and "html.mp4: " in out
