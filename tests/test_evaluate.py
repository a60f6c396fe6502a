"""Evaluation: metrics plumbing, 10-frame aggregation = averaged per-frame probabilities, the modality
ablation, retrieval embeddings, and loading a split once."""

import pytest
import torch
from torch import nn

from avlib import evaluate as E
from avlib import metrics as M
from avlib.models import create_model

SMALL = dict(audio_length=96, img_size=64)
G = torch.Generator().manual_seed(0)


def _clips(n=6, K=4, frames=10):
    audio = torch.randn(n, 96, 128, generator=G)
    shape = (n, frames, 3, 64, 64) if frames else (n, 3, 64, 64)
    video = torch.randn(*shape, generator=G)
    labels = nn.functional.one_hot(torch.arange(n) % K, K).float()
    return E.ClipTensors(audio, video, labels, [f"c{i}" for i in range(n)], [f"k{k}" for k in range(K)])


class Fixed(nn.Module):
    """A stand-in classifier whose logits are given (one row per clip, in order)."""

    def __init__(self, logits):
        super().__init__()
        self.logits, self.i = logits, 0
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, a, v, mode="multimodal"):
        out = self.logits[self.i:self.i + len(a if a is not None else v)]
        self.i += len(out)
        return out


def test_evaluate_matches_metrics_module():
    clips = _clips(frames=0)
    logits = torch.randn(6, 4, generator=G)
    res = E.evaluate(Fixed(logits), clips, batch_size=4)
    assert res["accuracy"] == pytest.approx(100 * M.accuracy(logits, clips.labels))
    assert res["macro_f1"] == pytest.approx(100 * M.macro_f1(logits, clips.labels, 4))
    assert res["confusion"] == M.confusion_matrix(logits, clips.labels, 4).tolist()
    assert set(res["per_class_accuracy"]) == {"k0", "k1", "k2", "k3"} and res["n"] == 6


def test_frame_aggregation_averages_per_frame_probabilities():
    torch.manual_seed(0)
    ft = create_model("tiny", num_classes=4, **SMALL).eval()
    clips = _clips(n=3)
    got = E.predict_scores(ft, clips, "multimodal", frame_agg=True)
    with torch.no_grad():
        per_frame = [ft(clips.audio, clips.video[:, i]).softmax(-1) for i in range(10)]
        per_frame = torch.stack(per_frame)  # [V, N, K]
    torch.testing.assert_close(got, per_frame.mean(0), rtol=1e-4, atol=1e-5)
    middle = E.predict_scores(ft, clips, "multimodal")  # no aggregation: frame 5
    torch.testing.assert_close(middle, per_frame[5], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="frames='all'"):
        E.predict_scores(ft, _clips(n=2, frames=0), frame_agg=True)


def test_modality_ablation_runs_every_mode_and_checks_inputs():
    torch.manual_seed(0)
    ft = create_model("tiny", num_classes=4, **SMALL)
    table = E.modality_ablation(ft, _clips(n=4, frames=0))
    assert list(table) == list(E.ABLATION_MODES)
    assert all(0 <= r["accuracy"] <= 100 for r in table.values())
    assert table["audioonly"]["accuracy"] != table["videoonly"]["accuracy"] or \
        table["audioonly"]["confusion"] != table["videoonly"]["confusion"]
    no_video = E.ClipTensors(torch.randn(2, 96, 128), None, torch.eye(4)[:2])
    with pytest.raises(ValueError, match="needs video"):
        E.evaluate(ft, no_video, "multimodal")
    assert E.evaluate(ft, no_video, "audioonly")["n"] == 2  # a modality the mode does not need may be missing


def test_embeddings_are_mean_pooled_stream_features():
    torch.manual_seed(0)
    pre = create_model("tiny", **SMALL)
    clips = _clips(n=5)
    a, v = E.embeddings(pre, clips, batch_size=2)
    with torch.no_grad():
        fa, fv = pre.forward_feat(clips.audio, clips.video[:, 5])
    torch.testing.assert_close(a, fa.mean(1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(v, fv.mean(1), rtol=1e-4, atol=1e-5)
    res = E.retrieval(pre, clips)
    assert res["sim"].shape == (5, 5) and 0 <= res["a2v"]["R@1"] <= 100 and res["v2a"]["MedR"] >= 1


def test_clip_tensors_helpers():
    clips = _clips(n=4)
    assert clips.middle_frame().shape == (4, 3, 64, 64)
    sub = clips.subset([3, 1])
    assert sub.video_ids == ["c3", "c1"] and torch.equal(sub.audio[0], clips.audio[3])
    assert not clips.multilabel and clips.targets.tolist() == [0, 1, 2, 3]
    table = E.format_table([{"a": 1.234, "b": "x"}, {"a": 2.0}])
    assert table.splitlines()[2] == "| 1.2 | x |" and table.splitlines()[3] == "| 2.0 |  |"


def test_load_split_on_ci_data_and_cache(ci_data):
    root = ci_data
    clips = E.load_split(root / "datafiles" / "test.json", frames="all", progress=False, cache=True)
    assert clips.audio.shape == (len(clips), 96, 128) and clips.video.shape[1:] == (10, 3, 64, 64)
    assert len(clips.class_names) == clips.labels.shape[1] == 13
    again = E.load_split(root / "datafiles" / "test.json", frames="all", progress=False, cache=True)
    assert again.audio is clips.audio  # served from memory
    middle = E.load_split(root / "datafiles" / "test.json", frames="middle", modalities=("video",),
                          progress=False, cache=True)
    assert middle.audio is None and torch.equal(middle.video, clips.video[:, 5])
    assert torch.equal(again.video, clips.video) and again.video.dtype == torch.float32  # the same values back
    held = [c.video.dtype for c in E._SPLITS.values()]
    assert held and set(held) == {torch.uint8}  # the memo keeps the frames as pictures: 4x smaller


def test_split_cache_is_bounded(ci_data, monkeypatch):
    monkeypatch.setattr(E, "_SPLITS", type(E._SPLITS)())
    monkeypatch.setattr(E, "CACHE_BYTES", 1)  # room for nothing but the newest split
    for split in ("val", "test"):
        E.load_split(ci_data / "datafiles" / f"{split}.json", progress=False, cache=True)
    assert len(E._SPLITS) == 1 and next(iter(E._SPLITS))[0].endswith("test.json")


def test_table_differences():
    mine = [{"init": "p", "ft": "AV", "steps": 90, "accuracy": 45.38, "acc10": 46.0},
            {"init": "p", "ft": "A", "steps": 90, "accuracy": 40.0}]
    ref = [{"init": "p", "ft": "A", "steps": 90, "accuracy": 40.02},
           {"init": "p", "ft": "AV", "steps": 90, "accuracy": 45.4, "acc10": 47.0},
           {"init": "s", "ft": "AV", "steps": 90, "accuracy": 30.0}]
    diffs = E.table_differences(mine, ref, keys=("init", "ft"))
    assert diffs == ["init=p, ft=AV: acc10 46.0 here, 47.0 in the reference",
                     "init=s, ft=AV: only in the reference"]
    assert E.table_differences(mine[1:], ref[:1], keys=("init", "ft")) == []
    assert E.table_differences(mine[1:], [{**ref[0], "steps": 91}], keys=("init", "ft")) == [
        "init=p, ft=A: steps 90 here, 91 in the reference"]
    assert E.table_differences([{"k": 1, "x": 2.0}], [{"k": 1}], keys=("k",)) == [
        "k=1: x 2.0 here, absent in the reference"]
    assert E.table_differences([{"k": 2, "x": 2.0}], [], keys=("k",)) == ["k=2: not in the reference"]
