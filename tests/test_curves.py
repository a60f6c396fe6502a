"""Training curves (avlib.curves) from synthetic histories: panels, labels, the smoothing maths."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from avlib import curves as C


def _history():
    rows = [{"step": s, "epoch": s // 5, "loss": 2.0 / (s + 1), "loss_mae_a": 1.0 / (s + 1), "lr": 1e-4 * s,
             "c_acc": s / 20} for s in range(1, 21)]
    rows.append({"step": 20, "epoch": 3, "val_loss": 0.3, "val_acc": 0.7})  # a sparse validation row
    return rows


def test_history_curves(tmp_path):
    fig = C.plot_history(_history(), title="pretraining")
    assert isinstance(fig, Figure) and len(fig.axes) == 3  # loss, accuracy, lr
    loss_ax = fig.axes[0]
    assert {ln.get_label() for ln in loss_ax.lines} == {"loss", "loss_mae_a", "val_loss"}
    fig.savefig(tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000


def test_history_from_csv(tmp_path):
    import csv

    rows = _history()
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(tmp_path / "history.csv", "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
    cols = C.history_columns(tmp_path / "history.csv")
    assert np.isnan(cols["val_acc"][:-1]).all() and cols["val_acc"][-1] == 0.7
    with pytest.raises(ValueError, match="no column"):
        C.plot_history(rows, x="time")


def test_pretraining_panels_with_validation_and_chance_levels():
    rows = [{"step": s, "epoch": (s - 1) // 5, "lr": 1e-4 * min(s, 5) / 5, "loss": 2.0, "loss_mae_a": 1.0 / s,
             "loss_mae_v": 0.5 + 1 / s, "loss_c": 2.0, "c_acc": 0.1, "grad_norm": 3.0 / s} for s in range(1, 21)]
    rows.insert(5, {"step": 5, "epoch": 0, "val_loss_mae_a": 0.4, "val_loss_mae_v": 0.9, "val_loss_c": 2.1,
                    "val_c_acc": 0.12})
    fig = C.plot_pretraining(rows, clip_grad=1.0, batch_size=8, smooth=4)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["MAE loss, audio", "MAE loss, video", "contrastive loss (InfoNCE)",
                                               "in-batch matching accuracy", "gradient norm (before clipping)",
                                               "learning rate"]
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert labels == ["train (per step)", "train (mean of 4 steps)", "val (fixed masks)"]
    assert any("ln 8" in t.get_text() for t in axes[2].get_legend().get_texts())
    assert any("1/8" in t.get_text() for t in axes[3].get_legend().get_texts())
    raw, smooth = axes[0].lines[0].get_ydata(), axes[0].lines[1].get_ydata()
    assert len(raw) == len(smooth) == 20 and smooth[0] == raw[0]
    assert smooth[-1] == pytest.approx(np.mean(raw[-4:]))  # trailing mean of the last 4 steps
    with pytest.raises(ValueError, match="pretraining history"):
        C.plot_pretraining([{"step": 1, "loss": 1.0}])
