"""Interactive explorers for the course's key ideas, each with a static fallback.

* :func:`patch_grid_explorer` - the patch grid over a spectrogram (patch size, one patch zoomed in);
* :func:`mask_explorer` - mask ratio, mask mode and seed on a spectrogram's tokens;
* :func:`attention_explorer` - attention weights per head and query token;
* :func:`temperature_explorer` - the InfoNCE temperature on an audio x video similarity matrix;
* :func:`retrieval_explorer` - the top-k videos retrieved for a chosen audio clip.

In a live Jupyter kernel with ipywidgets each returns an ``ipywidgets`` box (sliders + the figure). Without a widget
frontend - when notebooks are executed for commit or tested by nbval, or with ``AVLIB_WIDGETS=0`` - it returns a
static ``Figure`` that shows several settings side by side, so stored notebooks still show the idea.
``AVLIB_WIDGETS=1`` forces the live version. Every panel is drawn by a plain function (``draw_*``), tested on
its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from avlib import diagrams, plots
from avlib.masking import MASK_MODES, mask_tokens

__all__ = ["live", "draw_patch_grid", "draw_mask", "draw_attention", "draw_softmax", "patch_grid_explorer",
           "mask_explorer", "attention_explorer", "temperature_explorer", "retrieval_explorer",
           "example_similarity"]


def live() -> bool:
    """True when widgets can be shown: ``AVLIB_WIDGETS`` is not 0, we run inside a Jupyter kernel that is not
    an nbval test, and ipywidgets imports. ``AVLIB_WIDGETS=1`` forces True, ``0`` forces False."""
    flag = os.environ.get("AVLIB_WIDGETS", "").strip().lower()
    if flag in ("0", "false", "no", "static"):
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    if flag in ("1", "true", "yes", "live"):
        return True
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None and "PYTEST_CURRENT_TEST" not in os.environ


def _interactive(draw: Callable[..., Figure], controls: dict[str, Any]):
    """An ipywidgets VBox: the controls and an Output that redraws ``draw(**values)`` on every change."""
    import ipywidgets as W
    from IPython.display import display

    out = W.Output()

    def redraw(**values):
        with out:
            out.clear_output(wait=True)
            display(draw(**values))

    ui = W.interactive(redraw, **controls)
    box = W.VBox([W.HBox(list(ui.children[:-1])), out])
    box.redraw = lambda: redraw(**ui.kwargs)  # interactive() has drawn once already; this redraws on demand
    return box


def _spec_ft(spec: Any) -> np.ndarray:
    """``[T, F]`` (avlib's fbank layout) -> ``[F, T]`` numpy for display; ``None`` -> the synthetic example."""
    if spec is None:
        return diagrams.example_spectrogram(T=192, F=128)
    s = spec.detach().float().cpu().numpy() if isinstance(spec, torch.Tensor) else np.asarray(spec, float)
    if s.ndim != 2:
        raise ValueError(f"expected one spectrogram [T, F], got shape {list(s.shape)}")
    return s.T


def _show(ax, spec_ft: np.ndarray) -> None:
    import matplotlib

    cmap = matplotlib.colormaps["magma"].resampled(32).with_extremes(bad=diagrams.HIDDEN)  # masked -> grey
    ax.imshow(spec_ft, origin="lower", aspect="auto", cmap=cmap, interpolation="nearest")  # 32 colours: small PNGs


# ------------------------------------------------------------------------------------------------------------
# patch grid
# ------------------------------------------------------------------------------------------------------------
def draw_patch_grid(ax, spec_ft: np.ndarray, patch: int = 16, highlight: int | None = 0) -> tuple[int, int]:
    """Spectrogram ``[F, T]`` with its ``patch x patch`` grid (the part that does not fill a patch is shaded);
    returns the grid (rows, cols)."""
    F_, T_ = spec_ft.shape
    rows, cols = F_ // patch, T_ // patch
    _show(ax, spec_ft)
    for r in range(rows + 1):
        ax.axhline(r * patch - 0.5, color="white", lw=0.6)
    for c in range(cols + 1):
        ax.axvline(c * patch - 0.5, color="white", lw=0.6)
    if cols * patch < T_:
        ax.axvspan(cols * patch - 0.5, T_ - 0.5, color="grey", alpha=0.6)
    if highlight is not None and rows * cols:
        f, t = divmod(highlight % (rows * cols), cols)
        ax.add_patch(_rect(t * patch - 0.5, f * patch - 0.5, patch, patch))
    ax.set_title(f"patch {patch}: {rows} × {cols} = {rows * cols} tokens, attention {(rows * cols) ** 2:,} pairs",
                 fontsize=9)
    ax.set(xlabel="time frame", ylabel="mel bin")
    return rows, cols


def _rect(x: float, y: float, w: float, h: float):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, ec=diagrams.LOSS, lw=2)


def patch_grid_explorer(spec: Any = None, sizes: Sequence[int] = (8, 16, 32)):
    """Patch grid over a spectrogram ``[T, F]`` (default: a synthetic one): patch size and one patch zoomed."""
    s = _spec_ft(spec)

    def draw(patch: int = 16, token: int = 0) -> Figure:
        fig = Figure(figsize=(11, 3.4), layout="constrained")
        ax, zoom = fig.subplots(1, 2, gridspec_kw={"width_ratios": [4, 1]})
        rows, cols = draw_patch_grid(ax, s, patch, token)
        f, t = divmod(token % max(rows * cols, 1), max(cols, 1))
        zoom.imshow(s[f * patch:(f + 1) * patch, t * patch:(t + 1) * patch], origin="lower", cmap="magma")
        zoom.set(title=f"token {token % max(rows * cols, 1)} = row {f}, column {t}\n{patch * patch} numbers",
                 xticks=[], yticks=[])
        return fig

    if live():
        import ipywidgets as W

        return _interactive(draw, {"patch": W.Dropdown(options=list(sizes), value=16),
                                   "token": W.IntSlider(value=0, min=0, max=200, continuous_update=False)})
    fig = Figure(figsize=(4 * len(sizes), 3.2), layout="constrained")
    for ax, p in zip(np.atleast_1d(fig.subplots(1, len(sizes))), sizes, strict=True):
        draw_patch_grid(ax, s, p, highlight=0)
    fig.suptitle("static view (run the notebook in Jupyter to explore): smaller patches, more tokens")
    return fig


# ------------------------------------------------------------------------------------------------------------
# masking
# ------------------------------------------------------------------------------------------------------------
def draw_mask(ax, spec_ft: np.ndarray, ratio: float = 0.75, mode: str = "unstructured", seed: int = 0,
              patch: int = 16) -> int:
    """Spectrogram ``[F, T]`` with the hidden 16 x 16 patches greyed out; returns the number of visible tokens."""
    rows, cols = spec_ft.shape[0] // patch, spec_ft.shape[1] // patch
    x = torch.zeros(1, rows * cols, 1)  # [B, L, D]: masking needs only B and L
    m = mask_tokens(x, ratio, mode, grid=(rows, cols), generator=torch.Generator().manual_seed(seed))
    hidden = m.mask[0].reshape(rows, cols).numpy()  # [rows, cols], 1 = hidden
    cover = np.kron(hidden, np.ones((patch, patch)))  # [F, T], 1 = hidden
    _show(ax, np.ma.masked_where(cover > 0, spec_ft[: rows * patch, : cols * patch]))  # hidden: grey
    kept = int((hidden == 0).sum())
    ax.set_title(f"{mode}, {ratio:.0%}: {kept} of {rows * cols} visible", fontsize=9)
    ax.set(xticks=[], yticks=[])
    return kept


def mask_explorer(spec: Any = None, ratios: Sequence[float] = (0.5, 0.75, 0.9)):
    """Mask ratio, mode (unstructured / time / freq / tf) and seed on a spectrogram ``[T, F]``."""
    s = _spec_ft(spec)

    def draw(ratio: float = 0.75, mode: str = "unstructured", seed: int = 0) -> Figure:
        fig = Figure(figsize=(9, 3.2), layout="constrained")
        draw_mask(fig.subplots(), s, ratio, mode, seed)
        return fig

    if live():
        import ipywidgets as W

        return _interactive(draw, {
            "ratio": W.FloatSlider(value=0.75, min=0.05, max=0.95, step=0.05, continuous_update=False),
            "mode": W.Dropdown(options=list(MASK_MODES), value="unstructured"),
            "seed": W.IntSlider(value=0, min=0, max=9, continuous_update=False)})
    fig = Figure(figsize=(3.3 * len(ratios), 1.5 * len(MASK_MODES)), layout="constrained")
    axes = fig.subplots(len(MASK_MODES), len(ratios), squeeze=False)
    for i, mode in enumerate(MASK_MODES):
        for j, r in enumerate(ratios):
            draw_mask(axes[i, j], s, r, mode)
    fig.suptitle("static view (run the notebook in Jupyter for sliders): rows = mode, columns = ratio")
    return fig


# ------------------------------------------------------------------------------------------------------------
# attention
# ------------------------------------------------------------------------------------------------------------
def draw_attention(ax, w: np.ndarray, len_a: int, audio_grid: tuple[int, int], head: int, query: int) -> float:
    """Where query token ``query`` of head ``head`` looks within the audio grid (``w [H, N, N]``); the title
    gives the share of its attention on the video tokens, which is returned."""
    rows, cols = audio_grid
    row = w[head, query]  # [N]
    ax.imshow(row[:len_a].reshape(rows, cols), origin="lower", cmap="viridis", aspect="auto")
    if query < len_a:
        ax.plot(query % cols, query // cols, "r+", ms=10)
    share = float(row[len_a:].sum())
    ax.set_title(f"head {head}, query {query}: {share:.0%} on video", fontsize=9)
    ax.set(xticks=[], yticks=[])
    return share


def attention_explorer(w: Any, len_a: int, audio_grid: tuple[int, int], queries: Sequence[int] | None = None):
    """Attention weights ``w [H, N, N]`` (``len_a`` audio tokens first): choose a head and a query token."""
    w = w.detach().float().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w, float)
    H, N = w.shape[0], w.shape[-1]
    rows, cols = audio_grid
    if rows * cols != len_a:
        raise ValueError(f"audio grid {audio_grid} has {rows * cols} tokens, but len_a = {len_a}")

    def draw(head: int = 0, query: int = 0) -> Figure:
        fig = Figure(figsize=(10, 3.2), layout="constrained")
        full, ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
        full.imshow(w[head] ** 0.5, cmap="viridis")
        full.axhline(query, color="red", lw=0.8)
        full.set(title=f"head {head}: queries × keys (sqrt)", xticks=[], yticks=[])
        draw_attention(ax, w, len_a, audio_grid, head, query)
        return fig

    if live():
        import ipywidgets as W

        return _interactive(draw, {"head": W.IntSlider(value=0, min=0, max=H - 1),
                                   "query": W.IntSlider(value=len_a // 2, min=0, max=N - 1,
                                                        continuous_update=False)})
    queries = list(queries) if queries is not None else [0, (rows // 2) * cols + cols // 2, len_a - 1]
    fig = Figure(figsize=(3.3 * len(queries), 2.2 * H), layout="constrained")
    axes = fig.subplots(H, len(queries), squeeze=False)
    for h in range(H):
        for j, q in enumerate(queries):
            draw_attention(axes[h, j], w, len_a, audio_grid, h, q)
    fig.suptitle("static view (run in Jupyter to pick any head and query): rows = heads, columns = audio queries")
    return fig


# ------------------------------------------------------------------------------------------------------------
# InfoNCE temperature
# ------------------------------------------------------------------------------------------------------------
def example_similarity(n: int = 8, noise: float = 2.0, seed: int = 0) -> np.ndarray:
    """Cosine similarities ``[n, n]`` of synthetic audio/video embeddings where each video resembles its audio."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 16))
    v = a + rng.normal(scale=noise, size=(n, 16))
    a, v = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, v))
    return a @ v.T


def draw_softmax(ax, sim: np.ndarray, temperature: float) -> float:
    """Softmax of ``sim / temperature`` over each column (one video against all audios, CAV-MAE's direction);
    returns the InfoNCE loss ``-mean log p(own audio)``."""
    logits = sim / temperature  # [N, N], rows = audio, columns = video
    p = np.exp(logits - logits.max(0, keepdims=True))
    p /= p.sum(0, keepdims=True)
    loss = float(-np.log(np.clip(np.diag(p), 1e-30, None)).mean())
    ax.imshow(p, cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"τ = {temperature:g}: loss {loss:.2f}, p(own) {np.diag(p).mean():.2f}", fontsize=9)
    ax.set(xlabel="video", ylabel="audio", xticks=[], yticks=[])
    return loss


def temperature_explorer(sim: Any = None, temperatures: Sequence[float] = (1.0, 0.2, 0.05, 0.01)):
    """The temperature of InfoNCE on a similarity matrix ``[N, N]`` (default: :func:`example_similarity`)."""
    s = example_similarity() if sim is None else (
        sim.detach().float().cpu().numpy() if isinstance(sim, torch.Tensor) else np.asarray(sim, float))
    chance = float(np.log(s.shape[1]))

    def draw(log10_tau: float = float(np.log10(0.05))) -> Figure:
        fig = Figure(figsize=(5, 4), layout="constrained")
        loss = draw_softmax(fig.subplots(), s, 10 ** log10_tau)
        fig.suptitle(f"chance: log N = {chance:.2f}; {'below' if loss < chance else 'not below'} chance",
                     fontsize=9)
        return fig

    if live():
        import ipywidgets as W

        return _interactive(draw, {"log10_tau": W.FloatSlider(value=float(np.log10(0.05)), min=-2.5, max=0.5,
                                                               step=0.1, continuous_update=False)})
    fig = Figure(figsize=(3.2 * len(temperatures), 3.3), layout="constrained")
    for ax, t in zip(np.atleast_1d(fig.subplots(1, len(temperatures))), temperatures, strict=True):
        draw_softmax(ax, s, t)
    fig.suptitle(f"static view (run in Jupyter for a slider): softmax over each column of s / τ; chance = "
                 f"log {s.shape[1]} = {chance:.2f}")
    return fig


# ------------------------------------------------------------------------------------------------------------
# retrieval
# ------------------------------------------------------------------------------------------------------------
def retrieval_explorer(sim: Any, frames: Any, labels: Sequence[int] | None = None,
                       class_names: Sequence[str] | None = None, k: int = 5, query: int = 0,
                       normalized: bool = True):
    """Pick an audio clip (row of ``sim [N, M]``) and see its top-``k`` frames (``frames [M, 3, H, W]``); the
    static view shows clip ``query``."""
    n = int(np.asarray(sim.shape)[0]) if hasattr(sim, "shape") else len(sim)

    def draw(query: int = query) -> Figure:
        return plots.plot_retrieval_strip(sim, query, frames, k=k, labels=labels, class_names=class_names,
                                          normalized=normalized)

    if live():
        import ipywidgets as W

        return _interactive(draw, {"query": W.IntSlider(value=query, min=0, max=n - 1, continuous_update=False)})
    fig = draw(query)
    fig.suptitle(f"static view of clip {query} (run in Jupyter to choose any of the {n} clips)", fontsize=9)
    return fig
