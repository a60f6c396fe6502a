"""Self-checks of notebook 14 (``avlib.checks.capstone``): right answers pass, typical mistakes get their hint."""

import tempfile

import pytest
import torch

from avlib import audio as A
from avlib import checks
from avlib import vision as V
from avlib.data.video import read_video
from avlib.predict import load_input


def _pipeline(path, model, pre, top_k=5, *, stats="pre", window=True, frames=None, mode="multimodal",
              reduce="softmax", transform="eval"):
    """The notebook's solution, with switches for the typical mistakes."""
    sr, T = pre["sample_rate"], pre["target_length"]
    window_s = T * A.FRAME_SHIFT_MS / 1000 if window else None
    vd = read_video(path, num_frames=10, sample_rate=sr, max_seconds=window_s)
    fb = A.fbank(vd.audio, sr, pre["num_mel_bins"])
    if stats == "pre":
        fb = A.normalize(fb, A.AudioStats.from_dict(pre["audio_stats"]))
    elif stats == "audioset":
        fb = A.normalize(fb, A.AUDIOSET_STATS)
    audio = A.pad_or_crop(fb, T)
    video = torch.from_numpy(vd.frames).permute(0, 3, 1, 2).contiguous()
    if transform == "eval":
        video = V.eval_transform(pre["image_size"])(video)
    else:  # resize only, no ImageNet normalisation
        video = V.resize_center_crop(video, pre["image_size"]).float() / 255
    if frames is not None:
        video = video[frames:frames + 1]
    with torch.no_grad():
        logits = model(audio[None].expand(len(video), -1, -1), video, mode=mode)  # [V, K]
    if reduce == "softmax":
        scores = logits.softmax(-1).mean(0)
    elif reduce == "mean_logits":
        scores = logits.mean(0).softmax(-1)
    else:
        scores = logits.mean(0)
    top = scores.topk(top_k)
    return [(pre["class_names"][i], float(p)) for p, i in zip(top.values, top.indices, strict=True)]


def good(path, model, pre, top_k=5):
    return _pipeline(path, model, pre, top_k)


def with_multiframe(path, model, pre, top_k=5):
    audio, frames = load_input(path, pre)
    probs = model.forward_multiframe(audio[None], frames[None], reduce="softmax")[0]
    top = probs.topk(top_k)
    return [(pre["class_names"][int(i)], p.item()) for p, i in zip(top.values, top.indices, strict=True)]


def crash(path, model, pre, top_k=5):
    return _pipeline(path, model, pre, top_k, stats=None)[0][0] + 1


@pytest.mark.parametrize("fn", [good, with_multiframe])
def test_right_versions_pass(fn, run_check):
    run_check.passes(checks.capstone.predict_clip, fn)


@pytest.mark.parametrize("kwargs, needle", [
    (dict(stats=None), "pre['audio_stats']"),
    (dict(stats="audioset"), "not AudioSet"),
    (dict(reduce="none"), "apply softmax"),
    (dict(reduce="mean_logits"), "averaged the logits"),
    (dict(frames=5), "one frame (index 5)"),
    (dict(mode="missingaudioonly"), "'missingaudioonly'"),
    (dict(mode="audioonly"), "not 'audioonly'"),
    (dict(window=False), "max_seconds"),
    (dict(transform="plain"), "follow the steps"),
])
def test_wrong_versions_get_their_hint(kwargs, needle, run_check):
    def wrong(path, model, pre, top_k=5):
        return _pipeline(path, model, pre, top_k, **kwargs)

    run_check.fails(checks.capstone.predict_clip, wrong, hint=needle)


def test_top_k_and_format(capsys):
    assert checks.capstone.predict_clip(lambda path, model, pre, top_k=5: good(path, model, pre, 5)) is False
    assert "top_k" in capsys.readouterr().out
    assert checks.capstone.predict_clip(lambda path, model, pre, top_k=5: {"bell": 0.5}) is False
    assert "list of (class name, probability)" in capsys.readouterr().out


def test_skipped_and_crashing(run_check):
    run_check.skips(checks.capstone.predict_clip)
    run_check.fails(checks.capstone.predict_clip, crash, hint="raised TypeError")


def test_the_example_is_sensitive_to_every_step():
    """The example model and video make each mistake change the top-5 probabilities by far more than the
    tolerance (otherwise a wrong pipeline could pass)."""
    model, pre = checks.capstone.example_model()
    with tempfile.TemporaryDirectory() as d:
        path = checks.capstone.example_video(d)
        ref = dict(good(path, model, pre))
        for kwargs in (dict(stats=None), dict(stats="audioset"), dict(window=False), dict(frames=5),
                       dict(reduce="mean_logits"), dict(mode="missingaudioonly"), dict(mode="audioonly"),
                       dict(transform="plain")):
            other = dict(_pipeline(path, model, pre, **kwargs))
            diff = max(abs(ref.get(c, 0.0) - other.get(c, 0.0)) for c in ref.keys() | other.keys())
            assert diff > 1e-2, (kwargs, diff)
