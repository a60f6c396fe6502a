"""Concept figures: one schematic per notebook, drawn with matplotlib in one style.

Every function draws a pyplot figure and returns it, so a notebook cell reads::

    diagrams.masking()
    plt.show()

Colours: audio orange, video teal, joint / shared purple, hidden grey, losses pink. :func:`for_notebook` maps a
notebook number to its figure; :data:`FIGURES` lists them all. The examples (spectrogram, frame) are synthetic
and deterministic, so the figures need no dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle

from avlib.masking import mask_tokens

__all__ = ["AUDIO", "VIDEO", "JOINT", "HIDDEN", "LOSS", "example_spectrogram", "example_frame", "course_map",
           "orchestra", "log_mel", "frame_sampling", "patch_embedding", "masking", "attention_block", "mae",
           "infonce", "cavmae_streams", "pretraining", "probes", "finetuning_modes", "evaluation", "capstone",
           "FIGURES", "for_notebook"]

AUDIO, VIDEO, JOINT, HIDDEN, LOSS, INK = "#d95f02", "#1b9e77", "#7570b3", "#bdbdbd", "#e7298a", "#333333"
_FONT = 9


# ------------------------------------------------------------------------------------------------------------
# drawing primitives (one style for every figure)
# ------------------------------------------------------------------------------------------------------------
def _canvas(w: float, h: float, title: str, figsize: tuple[float, float] = (10, 3.6)):
    fig, ax = plt.subplots(figsize=figsize)
    ax.set(xlim=(0, w), ylim=(0, h), aspect="equal")
    ax.axis("off")
    fig.suptitle(title, fontsize=11, color=INK)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9)
    return fig, ax


def _tint(color: str, amount: float = 0.82) -> tuple[float, float, float]:
    rgb = np.array(plt.matplotlib.colors.to_rgb(color))
    return tuple(rgb + (1 - rgb) * amount)


def _box(ax, x: float, y: float, w: float, h: float, text: str = "", color: str = INK, size: int = _FONT,
         filled: bool = True) -> None:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12", lw=1.3,
                                ec=color, fc=_tint(color) if filled else "white"))
    if text:
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, color=INK)


def _arrow(ax, xy0: tuple[float, float], xy1: tuple[float, float], color: str = INK, text: str = "",
           style: str = "-|>") -> None:
    ax.annotate("", xy=xy1, xytext=xy0, arrowprops={"arrowstyle": style, "color": color, "lw": 1.3,
                                                      "shrinkA": 2, "shrinkB": 2})
    if text:
        ax.text((xy0[0] + xy1[0]) / 2, (xy0[1] + xy1[1]) / 2 + 0.12, text, ha="center", va="bottom",
                fontsize=_FONT - 1, color=color)


def _tokens(ax, x: float, y: float, colors: Sequence[str], size: float = 0.28, gap: float = 0.05,
            labels: Sequence[str] | None = None) -> float:
    """A row of token squares from (x, y); returns the x after the last one."""
    for i, c in enumerate(colors):
        ax.add_patch(Rectangle((x + i * (size + gap), y), size, size, fc=c, ec="white", lw=0.8))
        if labels is not None and labels[i]:
            ax.text(x + i * (size + gap) + size / 2, y + size / 2, labels[i], ha="center", va="center",
                    fontsize=6, color="white")
    return x + len(colors) * (size + gap)


def _inset(ax, x: float, y: float, w: float, h: float):
    """A child axes at data coordinates (x, y, w, h) of ``ax``, without ticks."""
    sub = ax.inset_axes((x, y, w, h), transform=ax.transData)
    sub.set(xticks=[], yticks=[])
    return sub


def example_spectrogram(T: int = 96, F: int = 64, seed: int = 0) -> np.ndarray:
    """A synthetic log-mel-like image ``[F, T]``: four notes with harmonics and decays over a noise floor."""
    rng = np.random.default_rng(seed)
    spec = -6 + 0.25 * rng.normal(size=(F, T)) - 0.03 * np.arange(F)[:, None]  # [F, T] noise floor
    t = np.arange(T)
    for k, (start, f0) in enumerate([(2, 6), (26, 9), (50, 5), (72, 8)]):
        env = np.where(t >= start, np.exp(-(t - start) / (14 + 4 * k)), 0.0)  # [T]
        for h in range(1, 6):
            f = int(f0 * h * (1 + 0.02 * h))
            for df, w in ((-1, 0.5), (0, 1.0), (1, 0.5)):
                if 0 <= f + df < F:
                    spec[f + df] = np.maximum(spec[f + df], -6 + 7 * w * env / h ** 0.7)
    return spec


def example_frame(size: int = 64) -> np.ndarray:
    """A synthetic frame ``[H, W, 3]`` in [0, 1]: an 'instrument' disc and a bar on a gradient."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.85 - 0.3 * y, 0.9 - 0.2 * x, 0.95 - 0.1 * y], -1)
    disc = (x - 0.38) ** 2 + (y - 0.55) ** 2 < 0.05
    img[disc] = (0.85, 0.45, 0.1)
    img[(abs(x - 0.75) < 0.05) & (abs(y - 0.45) < 0.3)] = (0.2, 0.35, 0.6)
    return img


def _spec(ax, spec: np.ndarray, grid: int | None = None) -> None:
    ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
    if grid:
        for r in range(0, spec.shape[0] + 1, grid):
            ax.axhline(r - 0.5, color="white", lw=0.6)
        for c in range(0, spec.shape[1] + 1, grid):
            ax.axvline(c - 0.5, color="white", lw=0.6)


# ------------------------------------------------------------------------------------------------------------
# one figure per notebook
# ------------------------------------------------------------------------------------------------------------
def course_map() -> Figure:
    """00: the course as a pipeline, with the notebook that builds each step."""
    fig, ax = _canvas(17, 4.2, "The course: from a clip to a classifier, one notebook per step", (12, 3.2))
    top = [("00", "setup,\nprofiles", INK), ("01", "orchestra\n(data)", INK), ("02", "log-mel", AUDIO),
           ("03", "frames", VIDEO), ("04", "patches\n→ tokens", JOINT), ("05", "masking", HIDDEN),
           ("06", "transformer\nblock", JOINT), ("07", "MAE", AUDIO)]
    bottom = [("08", "InfoNCE", LOSS), ("09", "CAV-MAE", JOINT), ("10", "pretrain", JOINT),
              ("11", "what did it\nlearn?", INK), ("12", "fine-tune", VIDEO), ("13", "evaluate", INK),
              ("14", "capstone", AUDIO)]
    for items, y in ((top, 2.6), (bottom, 0.4)):
        for i, (n, text, c) in enumerate(items):
            x = 0.2 + i * 2.1
            _box(ax, x, y, 1.7, 1.2, f"{n}\n{text}", c)
            if i:
                _arrow(ax, (x - 0.4, y + 0.6), (x, y + 0.6))
    _arrow(ax, (0.2 + 7 * 2.1 + 0.85, 2.6), (1.05, 1.6), INK)
    return fig


def orchestra() -> Figure:
    """01: a clip = a sound + 10 frames + labels, listed in a datafile; four splits, `test` from another domain."""
    fig, ax = _canvas(15, 5, "One clip of the orchestra, and how CAV-MAE reads it", (12, 4))
    t = np.linspace(0, 5, 400)
    ax.plot(0.3 + t, 3.9 + 0.5 * np.sin(t * 23) * np.exp(-((t % 1.25) * 2.2)), color=AUDIO, lw=0.8)
    ax.text(0.3, 4.6, "audio/<id>.wav (16 kHz)", fontsize=_FONT, color=AUDIO)
    for i in range(10):
        ax.add_patch(Rectangle((0.3 + i * 0.5, 2.6), 0.42, 0.42, fc=_tint(VIDEO, 0.5), ec=VIDEO))
    ax.text(0.3, 2.2, "frames/frame_<0..9>/<id>.jpg: one per 1/10 of the clip", fontsize=_FONT, color=VIDEO)
    _arrow(ax, (5.5, 3.4), (6.5, 3.4))
    _box(ax, 6.5, 2.3, 4.1, 2.3, '{"video_id": "train_00004",\n "wav": "audio/train_00004.wav",\n'
         ' "video_path": "frames",\n "labels": "trumpet"}', INK, size=_FONT - 1)
    ax.text(8.55, 4.8, "datafiles/<split>.json", ha="center", fontsize=_FONT, color=INK)
    for i, (name, c) in enumerate([("unlabeled", JOINT), ("train", JOINT), ("val", JOINT),
                                   ("test\n(held out)", LOSS)]):
        _box(ax, 11.2 + (i // 2) * 1.9, 3.4 - (i % 2) * 1.3, 1.7, 1.0, name, c, size=_FONT - 1)
    ax.text(13.05, 1.6, "unlabeled / train / val: the training domain; test: what training never saw",
            ha="center", fontsize=_FONT - 2, color=INK)
    ax.text(0.3, 0.8, "13 instruments, one label per clip (chance 1/13); some clips add a quieter second voice or a"
            " silent distractor picture.", fontsize=_FONT, color=INK)
    return fig


def log_mel() -> Figure:
    """02: waveform -> 25-ms windows every 10 ms -> |FFT|^2 -> mel filterbank -> log -> [T, F] image."""
    fig, ax = _canvas(16, 5, "From waveform to log-mel: one row of mel energies every 10 ms", (12, 3.8))
    t = np.linspace(0, 3.2, 500)
    ax.plot(0.2 + t, 3.2 + 0.6 * np.sin(t * 40) * np.sin(t * 3), color=AUDIO, lw=0.8)
    for k in range(3):
        x0 = 0.5 + k * 0.55
        ax.add_patch(Rectangle((x0, 2.4 - 0.15 * k), 0.9, 1.7, fill=False, ec=INK, lw=1, ls="--"))
    ax.text(0.2, 1.6, "25-ms windows\n(400 samples),\nhop 10 ms (160)", fontsize=_FONT - 1, color=INK)
    steps = [("Hann window", INK), ("|FFT|²\n(power)", AUDIO), ("mel filterbank\n(128 triangles)", AUDIO),
             ("log", AUDIO)]
    for i, (text, c) in enumerate(steps):
        _box(ax, 4.0 + i * 2.2, 2.6, 1.8, 1.2, text, c)
        _arrow(ax, (3.6 + i * 2.2, 3.2), (4.0 + i * 2.2, 3.2))
    sub = _inset(ax, 8.4, 0.3, 1.6, 1.9)  # the triangles
    f = np.linspace(0, 1, 200)
    for c in np.geomspace(0.05, 0.9, 9):
        sub.plot(f, np.clip(1 - abs(f - c) / (c * 0.35 + 0.02), 0, None), color=AUDIO, lw=0.8)
    sub.set_xlabel("Hz (linear) →", fontsize=7)
    _arrow(ax, (12.6, 3.2), (13.0, 3.2))
    _spec(_inset(ax, 13.0, 1.6, 2.8, 3.0), example_spectrogram())
    ax.text(14.4, 1.1, "fbank [T, F]\n(time →, mel bin ↑)", ha="center", fontsize=_FONT - 1, color=INK)
    return fig


def frame_sampling() -> Figure:
    """03: 10 frames per clip; training draws one at random, evaluation takes the middle one (or all ten)."""
    fig, ax = _canvas(15, 4.4, "Which frame does the model see?", (12, 3.5))
    ax.plot([0.5, 10.5], [2.0, 2.0], color=INK, lw=1)
    for i in range(10):
        x = 0.5 + i + 0.5
        color = LOSS if i == 3 else (VIDEO if i == 5 else HIDDEN)
        ax.add_patch(Rectangle((x - 0.4, 2.3), 0.8, 0.8, fc=_tint(color, 0.4), ec=color, lw=1.5))
        ax.plot([x], [2.0], "|", color=INK)
        ax.text(x, 1.6, f"{i}", ha="center", fontsize=_FONT - 1)
    ax.text(5.5, 1.0, "clip time → (frame i at the centre of segment i)", ha="center", fontsize=_FONT)
    ax.text(3.9, 3.4, "training: random", ha="center", fontsize=_FONT, color=LOSS)
    ax.text(6.1, 3.4, "evaluation: middle (5)", ha="center", fontsize=_FONT, color=VIDEO)
    ax.text(5.5, 3.9, "test time: all ten, predictions averaged", ha="center", fontsize=_FONT, color=INK)
    _arrow(ax, (10.7, 2.7), (11.4, 2.7))
    _box(ax, 11.4, 2.0, 3.3, 1.4, "resize + centre-crop\n→ float [0, 1]\n→ ImageNet mean / std", VIDEO)
    return fig


def patch_embedding() -> Figure:
    """04: a spectrogram cut into 16 x 16 patches -> a sequence of tokens -> Linear + positions + modality."""
    fig, ax = _canvas(17.4, 5.6, "Patch embedding: cut into 16 × 16 patches, flatten, project, add positions",
                      (12, 3.9))
    spec = example_spectrogram()  # [F=64, T=96] -> 4 x 6 patches of 16 x 16
    _spec(_inset(ax, 0.2, 1.0, 4.6, 3.4), spec, grid=16)
    ax.text(2.5, 0.5, "spectrogram [F, T] → 4 × 6 patches", ha="center", fontsize=_FONT, color=AUDIO)
    _arrow(ax, (4.9, 2.7), (5.5, 2.7), text="flatten")
    end = _tokens(ax, 5.6, 2.58, [AUDIO] * 24, size=0.2, gap=0.04)
    ax.text(5.6, 2.0, "token f · cols + t: 24 patches\nof 16 × 16 = 256 numbers", fontsize=_FONT - 1, color=INK)
    _arrow(ax, (end + 0.05, 2.66), (end + 0.6, 2.66))
    x = end + 0.6
    _box(ax, x, 3.6, 2.6, 1.0, "Linear 256 → D\n(= Conv2d k=16, s=16)", JOINT)
    _box(ax, x, 2.2, 2.6, 1.0, "+ 2-D sin-cos\nposition (row, col)", JOINT)
    _box(ax, x, 0.8, 2.6, 1.0, "+ modality embedding\n(audio or video)", JOINT)
    _arrow(ax, (x + 1.3, 3.6), (x + 1.3, 3.2))
    _arrow(ax, (x + 1.3, 2.2), (x + 1.3, 1.8))
    ax.text(x + 1.3, 0.3, "tokens [B, N, D]", ha="center", fontsize=_FONT, color=INK)
    sub = _inset(ax, 15.0, 2.4, 2.2, 2.2)
    img = example_frame()
    sub.imshow(img, interpolation="nearest")
    for k in range(0, 65, 16):
        sub.axhline(k - 0.5, color="white", lw=0.8)
        sub.axvline(k - 0.5, color="white", lw=0.8)
    ax.text(16.1, 1.5, "a frame: the same,\n4 × 4 patches\nof 16 × 16 × 3", ha="center", fontsize=_FONT - 1,
            color=VIDEO)
    return fig


def masking(ratio: float = 0.75, seed: int = 0) -> Figure:
    """05: the same 8 x 12 audio token grid masked at random, by time columns and by frequency rows."""
    rows, cols = 8, 12
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3), layout="constrained")
    x = torch.zeros(1, rows * cols, 1)  # [B, L, D]: masking only needs B and L
    for ax, mode in zip(axes, ("unstructured", "time", "freq"), strict=True):
        m = mask_tokens(x, ratio, mode, grid=(rows, cols), generator=torch.Generator().manual_seed(seed))
        grid = m.mask[0].reshape(rows, cols).numpy()  # [rows, cols], 1 = hidden
        rgb = np.where(grid[..., None] > 0, plt.matplotlib.colors.to_rgb(HIDDEN),
                       plt.matplotlib.colors.to_rgb(AUDIO))
        ax.imshow(rgb, origin="lower", interpolation="nearest")
        ax.set_xticks(np.arange(cols) - 0.5, minor=True)
        ax.set_yticks(np.arange(rows) - 0.5, minor=True)
        ax.grid(which="minor", color="white", lw=1)
        ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
        kept = int((grid == 0).sum())
        ax.set_title(f"{mode}: {kept} of {rows * cols} visible", fontsize=10, color=INK)
        ax.set(xlabel="time column →", ylabel="frequency row ↑")
    fig.suptitle(f"Masking {ratio:.0%}: orange tokens go to the encoder, grey ones must be reconstructed",
                 fontsize=11, color=INK)
    return fig


def attention_block() -> Figure:
    """06: attention = softmax(Q Kᵀ / √d) V, and CAV-MAE's block with one LayerNorm set per stream."""
    fig, ax = _canvas(16, 5.4, "Attention, and the block CAV-MAE stacks (shared weights, per-stream LayerNorms)",
                      (12, 4.0))
    for name, y in [("Q", 4.0), ("K", 2.8), ("V", 1.6)]:
        _box(ax, 0.3, y, 0.9, 0.8, name, JOINT)
    _box(ax, 1.9, 2.9, 2.3, 1.6, "softmax(Q Kᵀ / √d)\n[N, N] per head", JOINT)
    _arrow(ax, (1.2, 4.4), (1.9, 3.9))
    _arrow(ax, (1.2, 3.2), (1.9, 3.4))
    w = np.exp(np.random.default_rng(1).normal(0, 1.2, (8, 8)))
    sub = _inset(ax, 4.5, 2.9, 1.6, 1.6)
    sub.imshow(w / w.sum(1, keepdims=True), cmap="viridis")
    _box(ax, 6.5, 1.5, 1.8, 1.0, "weights · V", JOINT)
    _arrow(ax, (1.2, 2.0), (6.5, 2.0))
    _arrow(ax, (5.3, 2.9), (7.2, 2.5))
    ax.text(3.7, 0.6, "H heads in parallel, concatenated, projected", ha="center", fontsize=_FONT, color=INK)
    x0 = 9.3
    ax.text(x0 + 3.1, 5.0, "block(x, stream):", ha="center", fontsize=_FONT + 1, color=INK)
    items = [("LN1", True), ("attention", False), ("+ x", False), ("LN2", True), ("MLP", False), ("+", False)]
    for i, (name, per_stream) in enumerate(items):
        y = 4.1 - i * 0.72
        if per_stream:
            for j, (s, c) in enumerate([("a", AUDIO), ("v", VIDEO), ("av", JOINT)]):
                _box(ax, x0 + j * 1.45, y, 1.3, 0.55, f"{name}_{s}", c, size=_FONT - 1)
        else:
            _box(ax, x0 + 0.7, y, 3.0, 0.55, name + (" (shared)" if name in ("attention", "MLP") else ""), INK,
                 size=_FONT - 1, filled=name in ("attention", "MLP"))
    ax.text(x0 + 2.2, 0.0, "the stream picks the LayerNorm; attention and MLP weights are the same",
            ha="center", fontsize=_FONT - 1, color=INK)
    return fig


def mae() -> Figure:
    """07: visible tokens -> encoder; mask tokens re-inserted (ids_restore) -> decoder; loss on hidden patches."""
    fig, ax = _canvas(18.5, 4.8, "A masked autoencoder: encode the visible 25 %, decode everything, "
                      "score the hidden 75 %", (12, 3.6))
    rng = np.random.default_rng(0)
    hidden = np.zeros(16, bool)
    hidden[rng.permutation(16)[:12]] = True
    _tokens(ax, 0.2, 3.4, [HIDDEN if h else AUDIO for h in hidden], size=0.26)
    ax.text(0.2, 3.9, "16 patches, 12 hidden", fontsize=_FONT - 1, color=INK)
    _arrow(ax, (2.6, 3.2), (3.4, 2.5), text="keep 4")
    end = _tokens(ax, 3.5, 2.0, [AUDIO] * 4, size=0.3)
    _box(ax, end + 0.3, 1.6, 2.2, 1.2, "encoder\n(deep, visible only)", AUDIO)
    x = end + 2.8
    _arrow(ax, (x, 2.2), (x + 0.5, 2.2))
    _tokens(ax, x + 0.6, 2.05, [JOINT if not h else HIDDEN for h in hidden], size=0.24,
            labels=["" if not h else "M" for h in hidden])
    ax.text(x + 0.6, 1.5, "+ mask tokens M, unshuffled\nwith ids_restore, + positions", fontsize=_FONT - 1,
            color=INK)
    x2 = x + 0.6 + 16 * 0.29 + 0.3
    _arrow(ax, (x2 - 0.25, 2.2), (x2 + 0.1, 2.2))
    _box(ax, x2 + 0.1, 1.6, 1.9, 1.2, "decoder\n(light)", JOINT)
    _arrow(ax, (x2 + 2.0, 2.2), (x2 + 2.5, 2.2))
    _box(ax, x2 + 2.5, 1.6, 1.6, 1.2, "MSE on\nhidden only", LOSS)
    ax.text(9.2, 0.4, "target: each hidden patch, normalised by its own mean and std (norm_pix_loss)",
            ha="center", fontsize=_FONT, color=INK)
    return fig


def infonce(n: int = 6, temperature: float = 0.05) -> Figure:
    """08: an N x N audio-video similarity matrix; CAV-MAE reads each video column as a softmax over the audios,
    and the diagonal holds the right partners."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n, 8))
    v = a + rng.normal(scale=0.9, size=(n, 8))  # each video resembles its own audio
    a, v = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, v))
    sim = a @ v.T  # [N, N] cosine similarities, rows = audio, columns = video
    p = np.exp(sim / temperature)
    p /= p.sum(0, keepdims=True)  # each column: one video's softmax over the audios
    loss = -np.log(np.diag(p)).mean()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for ax, m, title in ((axes[0], sim, "similarity s(aᵢ, vⱼ) = cosine"),
                         (axes[1], p, f"softmax of s / τ over each column (τ = {temperature})")):
        ax.imshow(m, cmap="viridis")
        for i in range(n):
            ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, ec=LOSS, lw=2))
        ax.set(title=title, xlabel="video j", ylabel="audio i", xticks=range(n), yticks=range(n))
    fig.suptitle(f"InfoNCE: −mean log p(aⱼ | vⱼ) over the pink diagonal = {loss:.2f} "
                 f"(chance: log {n} = {np.log(n):.2f})", fontsize=11, color=INK)
    return fig


def cavmae_streams() -> Figure:
    """09: CAV-MAE = two modality stacks, a shared layer run as three streams, a joint decoder, two losses."""
    fig, ax = _canvas(16, 6, "CAV-MAE: three streams through one shared layer", (12, 4.5))
    _tokens(ax, 0.2, 4.6, [AUDIO] * 6)
    _tokens(ax, 0.2, 1.0, [VIDEO] * 4)
    ax.text(0.2, 5.1, "visible audio tokens", fontsize=_FONT - 1, color=AUDIO)
    ax.text(0.2, 0.5, "visible video tokens", fontsize=_FONT - 1, color=VIDEO)
    _box(ax, 2.5, 4.3, 2.3, 0.9, "audio blocks", AUDIO)
    _box(ax, 2.5, 0.7, 2.3, 0.9, "video blocks", VIDEO)
    _arrow(ax, (2.2, 4.75), (2.5, 4.75))
    _arrow(ax, (1.6, 1.15), (2.5, 1.15))
    streams = [(4.3, "shared layer · LN_a", AUDIO), (2.5, "shared layer · LN_av\n[audio ; video]", JOINT),
               (0.7, "shared layer · LN_v", VIDEO)]
    for y, text, c in streams:
        _box(ax, 6.0, y, 3.0, 0.9 if c != JOINT else 1.2, text, c)
    _arrow(ax, (4.8, 4.75), (6.0, 4.75))
    _arrow(ax, (4.8, 1.15), (6.0, 1.15))
    _arrow(ax, (4.8, 4.5), (6.0, 3.3))
    _arrow(ax, (4.8, 1.4), (6.0, 2.7))
    _box(ax, 10.0, 4.3, 1.8, 0.9, "mean-pool c_a", AUDIO)
    _box(ax, 10.0, 0.7, 1.8, 0.9, "mean-pool c_v", VIDEO)
    _box(ax, 10.0, 2.5, 2.4, 1.2, "+ mask tokens\njoint decoder", JOINT)
    for y in (4.75, 1.15):
        _arrow(ax, (9.0, y), (10.0, y))
    _arrow(ax, (9.0, 3.1), (10.0, 3.1))
    _box(ax, 13.0, 4.0, 2.7, 1.5, "InfoNCE(c_a, c_v)\nL_c", LOSS)
    _box(ax, 13.0, 1.9, 2.7, 1.5, "MSE on hidden\naudio + video\npatches  L_r", LOSS)
    _arrow(ax, (11.8, 4.75), (13.0, 4.75))
    _arrow(ax, (11.8, 1.3), (13.0, 4.3))
    _arrow(ax, (12.4, 3.1), (13.0, 2.65))
    ax.text(14.35, 1.2, "L = L_r + λ_c · L_c", ha="center", fontsize=_FONT + 1, color=INK)
    return fig


def pretraining(warmup: int = 100, steps: int = 960) -> Figure:
    """10: the pretraining loop, with the warm-up + cosine learning-rate schedule."""
    fig, ax = _canvas(16, 5, "Pretraining: one step, repeated, on unlabelled clips", (12, 3.8))
    steps_ = [("batch of clips\n(labels unused)", INK), ("mask 75 % of\neach modality", HIDDEN),
              ("CAV-MAE forward\nL_r + 0.01 · L_c", LOSS), ("backward\n+ clip grad norm", JOINT),
              ("AdamW step\n(lr from schedule)", JOINT)]
    for i, (text, c) in enumerate(steps_):
        _box(ax, 0.2 + i * 2.35, 2.8, 2.0, 1.3, text, c)
        if i:
            _arrow(ax, (0.2 + i * 2.35 - 0.35, 3.45), (0.2 + i * 2.35, 3.45))
    _arrow(ax, (10.3, 2.8), (1.2, 2.8), style="-|>")
    ax.text(5.6, 2.2, "next step; every few epochs: checkpoint (resume from it)", ha="center",
            fontsize=_FONT - 1, color=INK)
    sub = _inset(ax, 12.0, 1.2, 3.8, 2.9)
    s = np.arange(steps)
    lr = np.where(s < warmup, s / warmup, 0.5 * (1 + np.cos(np.pi * (s - warmup) / (steps - warmup))))
    sub.plot(s, lr, color=JOINT)
    sub.set_title("learning rate: warm-up, cosine", fontsize=_FONT)
    sub.set_xlabel("step", fontsize=_FONT - 1)
    return fig


def probes() -> Figure:
    """11: three ways to ask a pretrained model what it knows, with no fine-tuning."""
    fig, ax = _canvas(16, 4.6, "What did it learn? Three probes of the frozen, pretrained model", (12, 3.5))
    cols = [("retrieval", "a sound → its own frame\namong N? (recall@k)", LOSS),
            ("inpainting", "hide patches →\nhow well are they filled?\n(vs the other modality)", HIDDEN),
            ("linear probe", "frozen embeddings →\nlogistic regression →\ninstrument?", VIDEO)]
    for i, (name, text, c) in enumerate(cols):
        x = 0.4 + i * 5.3
        _box(ax, x, 2.9, 4.6, 1.0, name, c)
        _box(ax, x, 0.6, 4.6, 1.9, text, c, filled=False)
    ax.text(8, 4.3, "each probe is compared with the same network at its random initialisation, and with chance",
            ha="center", fontsize=_FONT, color=INK)
    return fig


def finetuning_modes() -> Figure:
    """12: the pooled classification head on the encoder; AV / A / V inputs; linear probe vs full fine-tuning."""
    fig, ax = _canvas(16, 5, "Fine-tuning: drop the decoder, pool the tokens, add a head", (12, 3.8))
    for i, (name, cs) in enumerate([("audio + video", [AUDIO, VIDEO]), ("audio only", [AUDIO]),
                                    ("video only", [VIDEO])]):
        y = 3.6 - i * 1.4
        x = _tokens(ax, 0.2, y + 0.2, [c for c in cs for _ in range(3)], size=0.3)
        ax.text(0.2, y + 0.7, name, fontsize=_FONT - 1, color=INK)
        _arrow(ax, (x + 0.1, y + 0.35), (3.6, 2.5))
    _box(ax, 3.6, 1.6, 3.2, 1.8, "pretrained encoder\n(modality blocks +\nshared layer)", JOINT)
    _arrow(ax, (6.8, 2.5), (7.6, 2.5))
    _box(ax, 7.6, 1.9, 2.2, 1.2, "mean-pool\ntokens", JOINT)
    _arrow(ax, (9.8, 2.5), (10.5, 2.5))
    _box(ax, 10.5, 1.9, 2.2, 1.2, "LayerNorm +\nLinear → K", LOSS)
    _box(ax, 13.2, 3.0, 2.6, 1.3, "linear probe:\nencoder frozen,\nhead trained", HIDDEN)
    _box(ax, 13.2, 0.9, 2.6, 1.3, "full fine-tune:\neverything trained\n(head lr × 10)", VIDEO)
    return fig


def evaluation() -> Figure:
    """13: test clips -> the classifier with both, one or a missing modality -> metrics."""
    fig, ax = _canvas(16, 5, "Evaluation: the same test clips, the same model, different inputs", (12, 3.8))
    inputs = [("audio + video", AUDIO), ("audio, video missing", AUDIO), ("video, audio missing", VIDEO),
              ("10 frames, averaged", VIDEO)]
    for i, (text, c) in enumerate(inputs):
        _box(ax, 0.2, 3.8 - i * 1.1, 3.4, 0.8, text, c)
        _arrow(ax, (3.6, 4.2 - i * 1.1), (4.6, 2.6))
    _box(ax, 4.6, 1.9, 2.6, 1.4, "fine-tuned\nclassifier", JOINT)
    _arrow(ax, (7.2, 2.6), (8.0, 2.6))
    metrics = ["accuracy (chance 1/K)", "macro-F1", "per-class accuracy", "confusion matrix"]
    for i, m in enumerate(metrics):
        _box(ax, 8.0, 3.7 - i * 0.95, 3.4, 0.75, m, LOSS, filled=i % 2 == 0)
    rng = np.random.default_rng(0)
    cm = np.eye(6) * 6 + rng.integers(0, 3, (6, 6))
    sub = _inset(ax, 12.2, 0.8, 3.4, 3.4)
    sub.imshow(cm / cm.sum(1, keepdims=True), cmap="Blues")
    sub.set_xlabel("predicted", fontsize=_FONT - 1)
    sub.set_ylabel("true", fontsize=_FONT - 1)
    return fig


def capstone() -> Figure:
    """14: a video file -> sound + 10 frames -> the classifier -> averaged probabilities; official weights."""
    fig, ax = _canvas(16, 5, "Capstone: from a video file to a prediction", (12, 3.8))
    _box(ax, 0.2, 2.0, 1.8, 1.2, "video.mp4", INK)
    _arrow(ax, (2.0, 2.9), (2.8, 3.7), text="PyAV")
    _arrow(ax, (2.0, 2.3), (2.8, 1.5))
    _box(ax, 2.8, 3.3, 3.6, 1.0, "16 kHz mono → fbank\n→ normalise, pad/crop", AUDIO)
    _box(ax, 2.8, 1.0, 3.6, 1.0, "10 frames → resize,\ncrop, normalise", VIDEO)
    _arrow(ax, (6.4, 3.8), (7.2, 2.9))
    _arrow(ax, (6.4, 1.5), (7.2, 2.3))
    _box(ax, 7.2, 2.0, 2.6, 1.2, "classifier\n(audio once,\n10 frames)", JOINT)
    _arrow(ax, (9.8, 2.6), (10.6, 2.6))
    _box(ax, 10.6, 2.0, 2.4, 1.2, "mean of 10\nprobabilities\n→ top-3", LOSS)
    _box(ax, 7.0, 4.0, 3.0, 0.8, "official weights →\navlib.convert", INK, size=_FONT - 1, filled=False)
    _arrow(ax, (8.5, 4.0), (8.5, 3.2))
    _box(ax, 13.4, 2.0, 2.4, 1.2, "torchrun ×2\n= one process\n(DDP)", JOINT, size=_FONT - 1, filled=False)
    return fig


FIGURES: dict[str, Callable[[], Figure]] = {
    "00": course_map, "01": orchestra, "02": log_mel, "03": frame_sampling, "04": patch_embedding,
    "05": masking, "06": attention_block, "07": mae, "08": infonce, "09": cavmae_streams, "10": pretraining,
    "11": probes, "12": finetuning_modes, "13": evaluation, "14": capstone,
}


def for_notebook(number: str | int) -> Figure:
    """The concept figure of notebook ``number`` (``"04"`` or ``4``)."""
    key = f"{int(number):02d}"
    if key not in FIGURES:
        raise KeyError(f"no concept figure for notebook {key}; there are {', '.join(FIGURES)}")
    return FIGURES[key]()
