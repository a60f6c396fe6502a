"""Predict on generated files (mp4, WAV, frame) with a model fine-tuned for a step on `ci` data."""

import json

import pytest
import torch

import avlib.predict
from avlib import train as T
from avlib.predict import load_input, main, predict


def _model(ci_data, tmp_path_factory, mode):
    d = tmp_path_factory.mktemp(f"model_{mode}")
    cfg = T.FinetuneConfig(data=str(ci_data), run_dir=str(d), mode=mode, max_steps=1, batch_size=8, amp=False,
                           progress=False, weight_averaging=False, val_split=None)
    return T.finetune(cfg).model_dir


@pytest.fixture(scope="module")
def av_model(ci_data, tmp_path_factory):
    return _model(ci_data, tmp_path_factory, "multimodal")


def test_predict_mp4_uses_both_modalities(ci_data, av_model):
    mp4 = sorted((ci_data / "mp4").glob("*.mp4"))[0]
    r = predict(mp4, av_model, top_k=3)
    assert r.mode == "multimodal" and len(r.top) == 3
    probs = [p for _, p in r.top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert r.probs.shape == (13,) and float(r.probs.sum()) == pytest.approx(1.0, abs=1e-5)
    names = json.loads((av_model / "config.json").read_text())["extra"]["class_names"]
    assert all(n in names for n, _ in r.top)
    assert avlib.predict(mp4, av_model, top_k=3).top == r.top  # the module is callable


def test_wav_and_frame_use_the_missing_modality_modes(ci_data, av_model):
    wav = sorted((ci_data / "audio").glob("val_*.wav"))[0]
    jpg = ci_data / "frames" / "frame_5" / (wav.stem + ".jpg")
    rs = predict([wav, jpg], av_model)
    assert [r.mode for r in rs] == ["missingaudioonly", "missingvideoonly"]


def test_wav_input_matches_the_training_pipeline(ci_data, av_model):
    from avlib.data.dataset import AVDataset, AVDatasetConfig

    _, pre = avlib.predict.load_model(av_model)
    ds = AVDataset(ci_data / "datafiles" / "val.json", cfg=AVDatasetConfig(train=False))
    item = ds[0]
    audio, frames = load_input(ds.entries[0].wav, pre)
    assert frames is None and torch.equal(audio, item["audio"])
    _, frame = load_input(ds.entries[0].frame_path(5), pre)
    torch.testing.assert_close(frame[0], item["video"])


def test_single_modality_models_refuse_the_other_modality(ci_data, tmp_path_factory):
    video_model = _model(ci_data, tmp_path_factory, "videoonly")
    wav = sorted((ci_data / "audio").glob("val_*.wav"))[0]
    with pytest.raises(ValueError, match="no pictures"):
        predict(wav, video_model)
    assert predict(sorted((ci_data / "mp4").glob("*.mp4"))[0], video_model).mode == "videoonly"


def test_bad_files_give_clear_errors(av_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.mp4"):
        predict(tmp_path / "nothere.mp4", av_model)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 10)
    with pytest.raises(ValueError, match="broken.mp4"):
        predict(bad, av_model)
    odd = tmp_path / "notes.txt"
    odd.write_text("hi")
    with pytest.raises(ValueError, match=r"notes\.txt is not an audio, video or image file"):
        predict(odd, av_model)
    with pytest.raises(FileNotFoundError, match="config.json"):
        predict(odd, tmp_path)


def test_cli(ci_data, av_model, tmp_path, capsys):
    mp4 = sorted((ci_data / "mp4").glob("*.mp4"))[0]
    assert main([str(mp4), "--model", str(av_model), "--top-k", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["mode"] == "multimodal" and len(out[0]["top"]) == 2
    assert main([str(tmp_path / "missing.wav"), "--model", str(av_model)]) == 1
    assert "missing.wav" in capsys.readouterr().err
