"""Dataset card, baselines and contact sheet of the orchestra."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from avlib import env
from avlib.data import orchestra as O
from avlib.data import report as R

K = len(O.read_classes())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    prof = dataclasses.replace(env.profile("ci"), name="tiny", clip_seconds=0.3, frame_size=32, image_size=32,
                               clips_per_class={"unlabeled": 0, "train": 2, "val": 1, "test": 1}, mp4_clips=0)
    return O.generate(prof, root=tmp_path_factory.mktemp("orc") / "tiny", workers=1, progress=False)


def test_card(tiny):
    card = R.dataset_card(tiny)
    assert "| Violin (`violin`) | 0 | 2 | 1 | 1 |" in card
    assert f"| **all** | 0 | {2 * K} | {K} | {K} |" in card
    for word in ("timgm6mb", "merlin", "openmoji", "CC-BY-SA-4.0", "GPL-2.0", "Apache-2.0", "Bach"):
        assert word in card, word


def test_features(tiny):
    ids = ["train_00000", "test_00001"]
    a = R.audio_features(tiny, ids)
    v = R.video_features(tiny, ids)
    assert a.shape == (2, 256) and np.isfinite(a).all()
    assert v.shape == (2, 64 + 48 + 432) and np.isfinite(v).all()
    assert np.allclose(v[:, :64].sum(1), 1.0) and np.allclose(v[:, 64:112].sum(1), 3.0)


@pytest.mark.slow  # importing scikit-learn alone takes seconds
def test_baselines_and_table(tiny):
    res = R.baselines(tiny)
    assert set(res) == {"audio", "video", "fusion", "chance"}
    for row in res.values():
        assert set(row) == {"val", "test"} and all(0 <= x <= 100 for x in row.values())
    assert res["chance"]["val"] == pytest.approx(100 / K)
    table = R.baseline_table(res)
    assert "log-mel" in table and "late fusion" in table and "| chance |" in table


def test_contact_sheet(tiny, tmp_path):
    from PIL import Image

    path = R.contact_sheet(tiny, tmp_path / "sheet.png", per_split=1)
    im = Image.open(path)
    assert im.width == 150 + 10 * 32 and im.height == 3 * 32  # the empty unlabeled split has no row


def test_missing_dataset_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m avlib data"):
        R.dataset_card(tmp_path)


def test_main_prints_card(tiny, capsys):
    assert R.main(["--root", str(tiny), "--no-baselines"]) == 0
    assert "The orchestra" in capsys.readouterr().out
