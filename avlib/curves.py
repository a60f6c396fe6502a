"""Training curves: a run's metric history (rows, or the ``history.csv`` a run wrote) as figures.

* :func:`history_columns` - the history as columns (name -> values, NaN where a row lacks the name);
* :func:`plot_history` - loss / accuracy / learning-rate curves, one panel per kind;
* :func:`plot_pretraining` - the six panels of a pretraining run (two MAE losses, InfoNCE, accuracy, gradient
  norm, learning rate) with validation points and chance levels.

Every function returns a ``matplotlib.figure.Figure`` made without pyplot; :mod:`avlib.plots` re-exports them.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = ["history_columns", "plot_history", "plot_pretraining"]


def history_columns(history: Sequence[Mapping[str, Any]] | str | Path) -> dict[str, np.ndarray]:
    """A metric history (list of row dicts, or the ``history.csv`` a run wrote) -> column name -> values
    (missing entries become NaN)."""
    if isinstance(history, str | Path):
        with open(history, newline="") as f:
            history = list(csv.DictReader(f))
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]

    def num(v: Any) -> float:
        try:
            return float(v)
        except (TypeError, ValueError):
            return float("nan")

    return {k: np.array([num(row.get(k)) for row in history]) for k in keys}


def plot_history(history: Sequence[Mapping[str, Any]] | str | Path, keys: Sequence[str] | None = None,
                 x: str = "step", title: str | None = None) -> Figure:
    """Curves of ``keys`` (default: every column with 'loss' in its name) plus accuracies and the learning
    rate, one panel per kind, against column ``x``. NaN points (e.g. in validation rows) are skipped."""
    cols = history_columns(history)
    if x not in cols:
        raise ValueError(f"the history has no column {x!r}; columns: {', '.join(cols)}")
    keys = list(keys) if keys is not None else [k for k in cols if "loss" in k]
    panels = [("loss", keys), ("accuracy", [k for k in cols if "acc" in k and k not in keys]),
              ("learning rate", [k for k in cols if k == "lr"])]
    panels = [(name, ks) for name, ks in panels if ks]
    fig = Figure(figsize=(4.2 * len(panels), 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, ks) in zip(axes, panels, strict=True):
        for k in ks:
            ok = ~np.isnan(cols[k]) & ~np.isnan(cols[x])
            if ok.any():
                ax.plot(cols[x][ok], cols[k][ok], label=k, marker="o" if ok.sum() < 30 else None, ms=3)
        ax.set_xlabel(x)
        ax.set_ylabel(name)
        if name == "loss" and all(np.nanmin(cols[k]) > 0 for k in ks if (~np.isnan(cols[k])).any()):
            ax.set_yscale("log")
        if name == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        ax.grid(alpha=0.3)
        if len(ks) > 1 or name != "learning rate":
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def _moving_average(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` points (over fewer at the start), same length as ``y``."""
    c = np.cumsum(np.insert(np.asarray(y, dtype=float), 0, 0.0))  # c[i] = sum of the first i values
    end = np.arange(1, len(y) + 1)
    start = np.maximum(end - window, 0)
    return (c[end] - c[start]) / (end - start)


def plot_pretraining(history: Sequence[Mapping[str, Any]] | str | Path, clip_grad: float | None = None,
                     batch_size: int | None = None, smooth: int | None = None,
                     title: str | None = None) -> Figure:
    """A pretraining history (``avlib.train.pretrain``) in six panels: MAE loss audio, MAE loss video,
    contrastive loss (InfoNCE, unweighted), in-batch matching accuracy, gradient norm, learning rate.

    Training curves are drawn raw (faint) and as a trailing mean over ``smooth`` steps (default: 1/30 of the
    run); validation rows (``val_*`` keys, fixed masks) as markers. ``batch_size`` adds the chance levels
    (InfoNCE of a uniform guess ln B, accuracy 1/B), ``clip_grad`` the clipping threshold."""
    cols = history_columns(history)
    if "step" not in cols or "loss_mae_a" not in cols:
        raise ValueError("plot_pretraining needs a pretraining history (columns step, loss_mae_a, ...); got "
                         f"columns {', '.join(cols) or 'none'}.")
    step = cols["step"]
    train = ~np.isnan(cols["loss_mae_a"])
    n = int(train.sum())
    window = max(1, smooth if smooth is not None else n // 30)
    panels = [("loss_mae_a", "MAE loss, audio"), ("loss_mae_v", "MAE loss, video"),
              ("loss_c", "contrastive loss (InfoNCE)"), ("c_acc", "in-batch matching accuracy"),
              ("grad_norm", "gradient norm (before clipping)"), ("lr", "learning rate")]
    fig = Figure(figsize=(13, 6.4), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for ax, (key, name) in zip(axes, panels, strict=True):
        if key in cols:
            y = cols[key][train]
            x = step[train]
            if key == "lr":
                ax.plot(x, y, color="C0")
                ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
            else:
                ax.plot(x, y, color="C0", alpha=0.25, lw=0.8, label="train (per step)")
                if window > 1:
                    ax.plot(x, _moving_average(y, window), color="C0", lw=1.6,
                            label=f"train (mean of {window} steps)")
        vkey = f"val_{key}"
        if vkey in cols:
            ok = ~np.isnan(cols[vkey])
            ax.plot(step[ok], cols[vkey][ok], "o-", color="C1", ms=3, lw=1, label="val (fixed masks)")
        if batch_size and key == "loss_c":
            ax.axhline(np.log(batch_size), color="0.4", ls="--", lw=1, label=f"uniform guess: ln {batch_size}")
        if batch_size and key == "c_acc":
            ax.axhline(1 / batch_size, color="0.4", ls="--", lw=1, label=f"chance: 1/{batch_size}")
        if clip_grad and key == "grad_norm":
            ax.axhline(clip_grad, color="C3", ls="--", lw=1, label=f"clipped to {clip_grad:g}")
            ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig
