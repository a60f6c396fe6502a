"""Interactive explorers: the static fallback (what nbval and stored notebooks show) and the live widgets."""

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from avlib import widgets  # noqa: E402


@pytest.fixture
def static(monkeypatch):
    monkeypatch.setenv("AVLIB_WIDGETS", "0")


@pytest.fixture
def forced_live(monkeypatch):
    monkeypatch.setenv("AVLIB_WIDGETS", "1")


def _titles(fig):
    return [ax.get_title() for ax in fig.axes]


def test_live_is_false_outside_a_kernel(monkeypatch):
    monkeypatch.delenv("AVLIB_WIDGETS", raising=False)
    assert widgets.live() is False  # pytest is not a Jupyter kernel
    monkeypatch.setenv("AVLIB_WIDGETS", "0")
    assert widgets.live() is False


def test_patch_grid_static(static):
    spec = torch.randn(96, 64)  # [T, F]
    fig = widgets.patch_grid_explorer(spec, sizes=(8, 16, 32))
    assert isinstance(fig, Figure)
    assert _titles(fig) == ["patch 8: 8 × 12 = 96 tokens, attention 9,216 pairs",
                            "patch 16: 4 × 6 = 24 tokens, attention 576 pairs",
                            "patch 32: 2 × 3 = 6 tokens, attention 36 pairs"]


def test_mask_static_shows_every_mode_and_ratio(static):
    fig = widgets.mask_explorer(torch.randn(96, 64), ratios=(0.5, 0.75))
    titles = _titles(fig)
    assert len(titles) == 8
    assert "unstructured, 75%: 6 of 24 visible" in titles
    assert "time, 50%: 12 of 24 visible" in titles


def test_mask_rejects_a_batch(static):
    with pytest.raises(ValueError, match=r"one spectrogram \[T, F\]"):
        widgets.mask_explorer(torch.randn(2, 96, 64))


def test_attention_static_reports_video_share(static):
    H, La, Lv = 2, 6, 2
    w = torch.zeros(H, La + Lv, La + Lv)
    w[0, :, -Lv:] = 0.5 / Lv  # head 0 puts half of every row on video
    w[0, :, :La] = 0.5 / La
    w[1, :, :La] = 1.0 / La  # head 1 looks at audio only
    fig = widgets.attention_explorer(w, La, (2, 3), queries=[0, 5])
    assert _titles(fig)[:4] == ["head 0, query 0: 50% on video", "head 0, query 5: 50% on video",
                                "head 1, query 0: 0% on video", "head 1, query 5: 0% on video"]
    with pytest.raises(ValueError, match="audio grid"):
        widgets.attention_explorer(w, La, (2, 2))


def test_temperature_static_loss_falls_with_tau_on_a_clean_diagonal(static):
    sim = np.eye(4) * 0.9 + 0.05  # each audio is closest to its own video
    fig = widgets.temperature_explorer(sim, temperatures=(1.0, 0.05))
    losses = [float(t.split("loss ")[1].split(",")[0]) for t in _titles(fig)]
    assert losses[0] > losses[1]  # sharper softmax: the right partner gets almost all the mass
    assert losses[0] == pytest.approx(-np.log(np.exp(0.95) / (np.exp(0.95) + 3 * np.exp(0.05))), abs=0.01)


def test_retrieval_static(static):
    sim = torch.eye(4)
    frames = torch.rand(4, 3, 16, 16)
    fig = widgets.retrieval_explorer(sim, frames, labels=[0, 1, 0, 1], class_names=["a", "b"], k=2, query=1,
                                     normalized=False)
    assert isinstance(fig, Figure)
    assert "clip 1" in fig.get_suptitle()
    assert _titles(fig)[1].startswith("#1: clip 1")


def test_live_widgets_redraw(forced_live):
    import ipywidgets as W

    box = widgets.mask_explorer(torch.randn(96, 64))
    assert isinstance(box, W.VBox)
    sliders = {c.description: c for c in box.children[0].children}
    assert set(sliders) == {"ratio", "mode", "seed"}
    sliders["mode"].value = "time"  # triggers a redraw; must not raise
    box.redraw()
    for make in (lambda: widgets.patch_grid_explorer(), lambda: widgets.temperature_explorer(),
                 lambda: widgets.attention_explorer(torch.rand(2, 8, 8), 6, (2, 3)),
                 lambda: widgets.retrieval_explorer(torch.eye(3), torch.rand(3, 3, 8, 8), k=2, normalized=False)):
        assert isinstance(make(), W.VBox)
