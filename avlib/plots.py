"""Figures for the course. Every function returns a ``matplotlib.figure.Figure`` (made without pyplot, so
nothing is shown twice in notebooks and nothing leaks in loops); save with ``fig.savefig(path)``.

* :func:`plot_history`, :func:`plot_pretraining`, :func:`history_columns` - training curves, from
  :mod:`avlib.curves` (re-exported here);
* :func:`plot_inpainting` - spectrogram and frame: original / masked / reconstruction / recon. + visible;
* :func:`plot_inpainting_stages` - several clips, the same masks, reconstructions of several models side by side
  (e.g. at the start / middle / end of pretraining);
* :func:`plot_similarity` - an audio x video similarity matrix;
* :func:`plot_embeddings` - a 2-D projection (PCA or t-SNE) of embeddings coloured by class;
* :func:`plot_confusion` - a confusion matrix;
* :func:`plot_retrieval_strip` - a query and its top-k retrieved items;
* :func:`plot_predictions` - a gallery of clips (frame, spectrogram) with the model's top guesses;
* :func:`plot_bars`, :func:`plot_label_efficiency` - result tables as charts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from avlib.curves import history_columns, plot_history, plot_pretraining
from avlib.patching import (
    patchify_audio,
    patchify_image,
    reconstruction_views,
    unpatchify_audio,
    unpatchify_image,
)
from avlib.vision import denormalize

__all__ = ["history_columns", "plot_history", "plot_pretraining", "reconstruct", "plot_inpainting",
           "plot_inpainting_stages", "plot_similarity", "project_2d", "plot_embeddings", "plot_confusion",
           "plot_retrieval_strip", "plot_predictions", "plot_bars", "plot_label_efficiency"]


def _np(x: Any) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ------------------------------------------------------------------------------------------------------------
# inpainting
# ------------------------------------------------------------------------------------------------------------
def reconstruct(audio: torch.Tensor, video: torch.Tensor, pred_a: torch.Tensor, pred_v: torch.Tensor,
                mask_a: torch.Tensor, mask_v: torch.Tensor, norm_pix: bool = True,
                patch: int = 16) -> dict[str, torch.Tensor]:
    """Images for one clip: ``audio [T, F]``, ``video [3, H, W]``, predictions ``[La, p*p]`` /
    ``[Lv, p*p*3]``, masks ``[La]`` / ``[Lv]`` (1 = masked). Returns ``{a,v}_{masked,recon,paste}``: the
    input with masked patches as NaN, the full reconstruction, and the reconstruction with the visible
    patches pasted back (:func:`avlib.patching.reconstruction_views`, as ``MAE.reconstruct``)."""
    T, F = audio.shape
    H = video.shape[-1]
    out = {}
    for m, x, pred, mask in (("a", audio, pred_a, mask_a), ("v", video, pred_v, mask_v)):
        x = x.detach().float().cpu()[None]
        patches = patchify_audio(x, patch) if m == "a" else patchify_image(x, patch)  # [1, L, P]
        views = reconstruction_views(patches, pred.cpu()[None], mask.cpu()[None], norm_pix)  # each [1, L, P]
        for k, v in views.items():
            out[f"{m}_{k}"] = unpatchify_audio(v, T, F, patch)[0] if m == "a" else unpatchify_image(v, H, patch)[0]
    return out


def _show_spec(ax, spec: torch.Tensor, vmin: float, vmax: float) -> None:
    ax.imshow(_np(spec).T, origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax,
              interpolation="nearest")  # [T, F] -> rows = mel bins


def _show_frame(ax, frame: torch.Tensor, normalized: bool = True) -> None:
    f = frame.detach().float().cpu()
    nan = torch.isnan(f).any(0)  # [H, W] masked pixels
    img = denormalize(torch.nan_to_num(f)) if normalized else f.clamp(0, 1)
    img = img.permute(1, 2, 0).numpy().copy()  # [3, H, W] -> [H, W, 3]
    img[nan.numpy()] = 0.5  # masked patches in grey
    ax.imshow(img)


def plot_inpainting(audio: torch.Tensor, video: torch.Tensor, pred_a: torch.Tensor, pred_v: torch.Tensor,
                    mask_a: torch.Tensor, mask_v: torch.Tensor, norm_pix: bool = True, patch: int = 16,
                    title: str | None = None) -> Figure:
    """2 x 4 grid for one clip (see :func:`reconstruct` for the inputs): rows spectrogram / frame; columns
    original, masked, reconstruction, reconstruction + visible."""
    r = reconstruct(audio, video, pred_a, pred_v, mask_a, mask_v, norm_pix, patch)
    a = audio.detach().float().cpu()
    vmin, vmax = float(a.min()), float(a.max())
    fig = Figure(figsize=(13, 5.2), layout="constrained")
    axes = fig.subplots(2, 4, gridspec_kw={"height_ratios": [1, 1.25]})
    names = ["original", "masked", "reconstruction", "reconstruction + visible"]
    specs = [a, r["a_masked"], r["a_recon"], r["a_paste"]]
    frames = [video, r["v_masked"], r["v_recon"], r["v_paste"]]
    for j, (name, spec, frame) in enumerate(zip(names, specs, frames, strict=True)):
        _show_spec(axes[0, j], spec, vmin, vmax)
        axes[0, j].set_title(name)
        _show_frame(axes[1, j], frame)
        axes[1, j].set_xticks([])
        axes[1, j].set_yticks([])
    axes[0, 0].set_ylabel("mel bin")
    axes[1, 0].set_ylabel("frame")
    for ax in axes[0]:
        ax.set_xlabel("time frame")
    if title:
        fig.suptitle(title)
    return fig


def plot_inpainting_stages(audio: torch.Tensor, video: torch.Tensor,
                           preds: Mapping[str, tuple[torch.Tensor, torch.Tensor]], mask_a: torch.Tensor,
                           mask_v: torch.Tensor, norm_pix: bool = True, patch: int = 16, paste: bool = True,
                           clip_names: Sequence[str] | None = None, title: str | None = None,
                           dpi: float = 72) -> Figure:
    """Reconstructions of several models of the same clips under the same masks, side by side.

    ``audio [N, T, F]``, ``video [N, 3, H, W]``, ``mask_a [N, La]`` / ``mask_v [N, Lv]`` (1 = masked) and
    ``preds = {column title: (pred_a [N, La, p*p], pred_v [N, Lv, p*p*3])}`` (e.g. the models at the start,
    middle and end of pretraining). Two rows per clip (spectrogram, frame; the frame row is labelled with
    ``clip_names[i]``); columns: original, masked, then
    one per model - the reconstruction with the visible patches pasted back (``paste=False``: the raw
    reconstruction). See :func:`reconstruct` for ``norm_pix``. The default ``dpi`` makes the figure about as
    wide as a notebook page and keeps its PNG small (a grid of noisy reconstructions compresses badly)."""
    N = audio.shape[0]
    names = ["original", "masked"] + list(preds)
    fig = Figure(figsize=(2.1 * len(names), 2.05 * N + 0.3), dpi=dpi, layout="constrained")
    axes = fig.subplots(2 * N, len(names), squeeze=False, gridspec_kw={"height_ratios": [1, 1.25] * N})
    for i in range(N):
        a = audio[i].detach().float().cpu()
        vmin, vmax = float(a.min()), float(a.max())
        images = {name: reconstruct(audio[i], video[i], pa[i], pv[i], mask_a[i], mask_v[i], norm_pix, patch)
                  for name, (pa, pv) in preds.items()}
        blank = reconstruct(audio[i], video[i], torch.zeros(mask_a.shape[1], patch * patch),
                            torch.zeros(mask_v.shape[1], patch * patch * video.shape[1]), mask_a[i], mask_v[i],
                            False, patch)  # only its masked images are used
        key = "paste" if paste else "recon"
        specs = [a, blank["a_masked"]] + [r[f"a_{key}"] for r in images.values()]
        frames = [video[i], blank["v_masked"]] + [r[f"v_{key}"] for r in images.values()]
        for j, (spec, frame) in enumerate(zip(specs, frames, strict=True)):
            ax_s, ax_f = axes[2 * i, j], axes[2 * i + 1, j]
            _show_spec(ax_s, spec, vmin, vmax)
            _show_frame(ax_f, frame)
            for ax in (ax_s, ax_f):
                ax.set_xticks([])
                ax.set_yticks([])
            if i == 0:
                ax_s.set_title(names[j], fontsize=10)
        axes[2 * i, 0].set_ylabel("spectrogram", fontsize=8)
        axes[2 * i + 1, 0].set_ylabel(clip_names[i] if clip_names is not None else f"clip {i}", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


# ------------------------------------------------------------------------------------------------------------
# similarity, embeddings, confusion, retrieval
# ------------------------------------------------------------------------------------------------------------
def plot_attention_heads(w: Any, len_a: int, audio_grid: tuple[int, int], query: int, title: str = ""
                         ) -> Figure:
    """Attention weights ``w`` ``[H, N, N]`` of one clip's joint stream (``len_a`` audio tokens, then video): per head,
    the whole matrix (top; sqrt scale, lines between audio and video) and where audio token ``query`` looks
    within the audio grid ``(rows, cols)`` (bottom)."""
    import matplotlib.pyplot as plt

    w = _np(w)
    H, N = w.shape[0], w.shape[-1]
    rows, cols = audio_grid
    fig, axes = plt.subplots(2, H, figsize=(4 * H, 6), layout="constrained", squeeze=False,
                             gridspec_kw={"height_ratios": [2.2, 1]})
    for h in range(H):
        ax = axes[0, h]
        ax.imshow(w[h] ** 0.5, cmap=plt.get_cmap("viridis", 16), interpolation="nearest")  # sqrt: small ones too
        ax.axhline(len_a - 0.5, color="white", lw=1)
        ax.axvline(len_a - 0.5, color="white", lw=1)
        ax.set(title=f"head {h}: queries x keys (sqrt)", xticks=[len_a / 2, (len_a + N) / 2], yticks=[],
               xticklabels=["audio", "video"])
        ax = axes[1, h]
        ax.imshow(w[h, query, :len_a].reshape(rows, cols), origin="lower", cmap="viridis", aspect="auto")
        ax.plot(query % cols, query // cols, "r+", ms=10)
        ax.set(title=f"head {h}: audio token {query} looks at", xlabel="time column", ylabel="freq row")
    if title:
        fig.suptitle(title)
    return fig


def plot_similarity(sim: Any, labels: Sequence[int] | None = None, class_names: Sequence[str] | None = None,
                    title: str = "audio x video cosine similarity") -> Figure:
    """Heat map of a similarity matrix ``[N, M]`` (rows = audio, columns = video). With ``labels`` the items
    are sorted by class and class boundaries are drawn."""
    import seaborn as sns

    s = _np(sim)
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    if labels is not None:
        lab = _np(labels).astype(int)
        order = np.argsort(lab, kind="stable")
        s, lab = s[np.ix_(order, order)], lab[order]
        edges = np.flatnonzero(np.diff(lab)) + 1
    sns.heatmap(s, ax=ax, cmap="viridis", square=s.shape[0] == s.shape[1], xticklabels=False,
                yticklabels=False, cbar_kws={"label": "cosine similarity"})
    if labels is not None:
        for e in edges:
            ax.axhline(e, color="w", lw=0.6)
            ax.axvline(e, color="w", lw=0.6)
        if class_names is not None:
            starts = np.r_[0, edges]
            mids = (starts + np.r_[edges, len(lab)]) / 2
            ax.set_yticks(mids, [class_names[lab[i]] for i in starts], fontsize=7, rotation=0)
    ax.set_xlabel("video")
    ax.set_ylabel("audio")
    ax.set_title(title)
    return fig


def project_2d(x: Any, method: str = "pca", seed: int = 0) -> np.ndarray:
    """``[N, D]`` -> ``[N, 2]`` by PCA (torch SVD) or t-SNE (scikit-learn, fixed ``seed``)."""
    z = torch.as_tensor(_np(x), dtype=torch.float64)
    if method == "pca":
        z = z - z.mean(0)
        _, _, vh = torch.linalg.svd(z, full_matrices=False)
        vh = vh[:2] * torch.sign(vh[:2, :1] + 1e-12)  # sign convention: deterministic plots
        return (z @ vh.T).numpy()  # [N, D] @ [D, 2] -> [N, 2]
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = max(2.0, min(30.0, (len(z) - 1) / 3))
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z.numpy())
    raise ValueError(f"unknown projection {method!r}; use 'pca' or 'tsne'.")


def plot_embeddings(emb: Any | Mapping[str, Any], labels: Sequence[int],
                    class_names: Sequence[str] | None = None, method: str = "pca", seed: int = 0,
                    title: str | None = None, ax: Any | None = None, legend: bool = True) -> Figure:
    """2-D projection of embeddings ``[N, D]`` coloured by class. Pass ``{"audio": a, "video": v}`` to project
    several sets jointly (one marker per set, same ``labels`` for each).

    ``ax``: draw into this existing Axes (e.g. one panel of a comparison) and return its figure; ``legend=False``
    leaves out the legend (e.g. on all but one panel)."""
    import seaborn as sns

    sets = dict(emb) if isinstance(emb, Mapping) else {"": emb}
    arrays = [_np(v) for v in sets.values()]
    xy = project_2d(np.concatenate(arrays), method, seed)
    lab = _np(labels).astype(int)
    K = int(lab.max()) + 1 if class_names is None else len(class_names)
    names = list(class_names) if class_names is not None else [str(k) for k in range(K)]
    colors = sns.color_palette("tab20" if K > 10 else "tab10", K)
    markers = ["o", "^", "s", "D"]
    if ax is None:
        fig = Figure(figsize=(6.5, 5), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    start = 0
    for i, arr in enumerate(arrays):
        part = xy[start:start + len(arr)]
        start += len(arr)
        for k in range(K):
            sel = lab == k
            if sel.any():
                ax.scatter(part[sel, 0], part[sel, 1], s=18, color=colors[k], alpha=0.8,
                           marker=markers[i % len(markers)], label=names[k] if i == 0 else None,
                           edgecolors="none")
    if len(sets) > 1:
        for i, set_name in enumerate(sets):
            ax.scatter([], [], color="grey", marker=markers[i % len(markers)], label=set_name)
    if legend:
        ax.legend(fontsize=7, ncol=1 + K // 12, loc="best", markerscale=1.2)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{method.upper()} of embeddings")
    return fig


def plot_confusion(cm: Any, class_names: Sequence[str] | None = None, normalize: bool = True,
                   title: str = "confusion matrix") -> Figure:
    """Confusion matrix ``[K, K]`` (rows = true, columns = predicted); ``normalize`` shows row shares."""
    import seaborn as sns

    m = _np(cm).astype(float)
    if normalize:
        m = m / np.clip(m.sum(1, keepdims=True), 1, None)
    K = len(m)
    names = list(class_names) if class_names is not None else [str(k) for k in range(K)]
    fig = Figure(figsize=(1.2 + 0.45 * K, 1.0 + 0.4 * K), layout="constrained")
    ax = fig.subplots()
    sns.heatmap(m, ax=ax, annot=K <= 16, fmt=".2f" if normalize else ".0f", cmap="Blues", vmin=0,
                vmax=1 if normalize else None, xticklabels=names, yticklabels=names, cbar=False,
                annot_kws={"fontsize": 7}, square=True)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return fig


def plot_retrieval_strip(sim: Any, query: int, frames: Any, k: int = 5, labels: Sequence[int] | None = None,
                         class_names: Sequence[str] | None = None, query_image: Any | None = None,
                         normalized: bool = True, title: str | None = None,
                         figsize: tuple[float, float] | None = None) -> Figure:
    """One audio query (row ``query`` of ``sim [N, M]``) and its top-``k`` videos (``frames [M, 3, H, W]``).

    The first panel shows ``query_image`` (e.g. the query's spectrogram ``[T, F]``) if given, else the query's
    own frame. A green title marks the true partner, orange the same class, red a different class.
    ``figsize`` defaults to ``(2.2 * (k + 1), 2.6)`` inches.
    """
    s = _np(sim)[query]
    top = np.argsort(-s, kind="stable")[:k]
    fig = Figure(figsize=figsize or (2.2 * (k + 1), 2.6), layout="constrained")
    axes = fig.subplots(1, k + 1)
    name = (lambda i: class_names[int(labels[i])]) if (labels is not None and class_names) else (lambda i: "")
    if query_image is not None and torch.as_tensor(_np(query_image)).ndim == 2:
        _show_spec(axes[0], torch.as_tensor(_np(query_image)), *np.nanpercentile(_np(query_image), [1, 99]))
    else:
        _show_frame(axes[0], torch.as_tensor(_np(frames[query] if query_image is None else query_image)),
                    normalized)
    axes[0].set_title(f"query #{query}\n{name(query)}", fontsize=9)
    for j, i in enumerate(top, start=1):
        _show_frame(axes[j], torch.as_tensor(_np(frames[i])), normalized)
        same = labels is not None and int(labels[i]) == int(labels[query])
        color = "green" if i == query else ("darkorange" if same else "red")
        axes[j].set_title(f"#{j}: clip {i} ({s[i]:.2f})\n{name(i)}", fontsize=9, color=color)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return fig


# ------------------------------------------------------------------------------------------------------------
# result tables
# ------------------------------------------------------------------------------------------------------------
def plot_predictions(audio: Any, frames: Any, probs: Any, targets: Sequence[int], class_names: Sequence[str],
                     titles: Sequence[str] | None = None, notes: Sequence[str] | None = None, k: int = 3,
                     normalized: bool = True, dpi: int = 80) -> Figure:
    """A gallery, one row per clip: its frame ``frames[i] [3, H, W]``, its log-mel spectrogram
    ``audio[i] [T, F]`` and the model's ``k`` most probable classes from ``probs [n, K]`` (green: the true
    class ``targets[i]``, added below the top ``k`` if it is not among them; red: a wrong first guess).

    ``titles[i]`` heads the row (default: ``#i``), ``notes[i]`` is an extra line under the spectrogram.
    ``dpi`` is kept low by default: spectrograms compress badly, and notebooks should stay small.
    """
    P, y = _np(probs), [int(t) for t in targets]
    n = len(y)
    fig = Figure(figsize=(9, 1.75 * n + 0.2), dpi=dpi, layout="constrained")
    axes = fig.subplots(n, 3, width_ratios=[1, 2.4, 1.8], squeeze=False)
    for i in range(n):
        ax_f, ax_s, ax_p = axes[i]
        _show_frame(ax_f, torch.as_tensor(_np(frames[i])), normalized)
        ax_f.set_title(titles[i] if titles is not None else f"#{i}", fontsize=8)
        spec = torch.as_tensor(_np(audio[i]))
        _show_spec(ax_s, spec, *np.nanpercentile(_np(spec), [1, 99]))
        ax_s.set_title(f"true: {class_names[y[i]]}" + (f"\n{notes[i]}" if notes is not None and notes[i] else ""),
                       fontsize=8)
        ax_s.set_xlabel("time frame", fontsize=7)
        ax_s.set_ylabel("mel bin", fontsize=7)
        top = [int(c) for c in np.argsort(-P[i], kind="stable")[:k]]
        if y[i] not in top:
            top.append(y[i])
        colors = ["#2ca02c" if c == y[i] else "#d62728" if j == 0 else "0.6" for j, c in enumerate(top)]
        bars = ax_p.barh(range(len(top)), [P[i, c] for c in top], color=colors)
        ax_p.bar_label(bars, [f"{P[i, c]:.2f}" for c in top], fontsize=7, padding=2)
        ax_p.set_yticks(range(len(top)), [class_names[c] for c in top], fontsize=8)
        ax_p.invert_yaxis()
        ax_p.set_xlim(0, 1.15)
        ax_p.set_xlabel("probability", fontsize=7)
        for ax in (ax_f, ax_s, ax_p):
            ax.tick_params(labelsize=7)
        ax_f.axis("off")
    return fig


def plot_bars(table: Mapping[str, Mapping[str, float]], ylabel: str = "accuracy (%)",
              title: str | None = None) -> Figure:
    """Grouped bars: ``table[group][series] = value`` (e.g. model -> test modality -> accuracy)."""
    groups = list(table)
    series: list[str] = []
    for g in groups:
        series += [s for s in table[g] if s not in series]
    fig = Figure(figsize=(1.5 + 1.3 * len(groups) * max(1, len(series)) / 3, 3.4), layout="constrained")
    ax = fig.subplots()
    w = 0.8 / max(1, len(series))
    for j, s in enumerate(series):
        vals = [table[g].get(s, np.nan) for g in groups]
        bars = ax.bar(np.arange(len(groups)) + (j - (len(series) - 1) / 2) * w, vals, w, label=s)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(np.arange(len(groups)), groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    return fig


def plot_label_efficiency(rows: Sequence[Mapping[str, Any]], metric: str = "accuracy",
                          title: str = "label efficiency") -> Figure:
    """Accuracy against the share of labels used, one line per ``init`` (rows: ``{"init", "fraction",
    metric}``)."""
    fig = Figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.subplots()
    inits = list(dict.fromkeys(r["init"] for r in rows))
    for init in inits:
        pts = sorted((float(r["fraction"]), float(r[metric])) for r in rows if r["init"] == init)
        ax.plot([100 * p[0] for p in pts], [p[1] for p in pts], marker="o", label=init)
    ax.set_xscale("log")
    ticks = sorted({100 * float(r["fraction"]) for r in rows})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("labelled training clips used (%)")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return fig
