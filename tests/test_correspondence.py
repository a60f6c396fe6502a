"""avlib.correspondence: what retrieval can learn from the pairs (synthetic features with known answers)."""

from __future__ import annotations

import numpy as np
import pytest

from avlib import correspondence as C
from avlib.data.report import split_features


def _pairs(n: int, classes: int, rng: np.random.Generator, tied: bool) -> dict:
    """Features of ``n`` clips: audio is random; video is a fixed linear map of the audio (``tied``) or
    independent noise. Labels cycle through ``classes``."""
    audio = rng.normal(size=(n, 24)).astype(np.float32)
    video = (audio @ _MIX if tied else rng.normal(size=(n, 40))).astype(np.float32)
    return {"audio": audio, "video": video, "labels": np.arange(n) % classes}


_MIX = np.random.default_rng(7).normal(size=(24, 40))


def test_linear_contrastive_learns_a_correspondence_that_exists():
    rng = np.random.default_rng(0)
    r = C.linear_contrastive(_pairs(256, 4, rng, True), _pairs(100, 4, rng, True), steps=300, batch_size=16)
    assert r["chance_acc"] == pytest.approx(100 / 16) and r["chance_r5"] == pytest.approx(5.0)
    assert r["train_acc"] > 80 and min(r["r5"].values()) > 60  # it transfers to clips it never saw


def test_linear_contrastive_memorises_pairs_without_transfer():
    """Independent audio and video: few clips with many features can be told apart in training (memorised),
    yet held-out retrieval stays near chance. This is what the course data shows (notebook 11)."""
    rng = np.random.default_rng(1)
    r = C.linear_contrastive(_pairs(48, 4, rng, False), _pairs(100, 4, rng, False), steps=600, batch_size=16)
    assert r["train_acc"] > 50
    assert max(r["r5"].values()) < 3 * r["chance_r5"]


def test_class_match_retrieval_is_bounded_by_the_class():
    """Perfect classifiers in both modalities: every same-class clip scores alike, so R@5 is about 5 of the
    clips per class, far above chance but far below 100 %."""
    rng = np.random.default_rng(2)

    def split(n):
        y = np.arange(n) % 4
        onehot = np.eye(4)[y] * 5
        return {"audio": (onehot + rng.normal(scale=0.1, size=(n, 4))).astype(np.float32),
                "video": (onehot + rng.normal(scale=0.1, size=(n, 4))).astype(np.float32), "labels": y}

    r = C.class_match_retrieval(split(80), split(80))  # 20 test clips per class
    assert r["audio_acc"] == 100 and r["video_acc"] == 100
    assert r["chance_r5"] == pytest.approx(500 / 80)
    for v in r["r5"].values():
        assert 10 <= v <= 50  # ~5/20 = 25 % when the class is all that is known


def test_split_features_of_a_generated_dataset(ci_data):
    f = split_features(ci_data, "test")
    n = len(f["labels"])
    assert n > 0 and f["audio"].shape[0] == f["video"].shape[0] == n
    assert np.isfinite(f["audio"]).all() and np.isfinite(f["video"]).all()
    with pytest.raises(ValueError, match="no clips in split 'nope'"):
        split_features(ci_data, "nope")
