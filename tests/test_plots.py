"""Figures on synthetic inputs: they build, have the expected panels, and the inpainting maths is right."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from avlib import plots as P
from avlib.patching import patchify_audio, patchify_image

G = torch.Generator().manual_seed(0)


def test_training_curves_are_still_importable_from_plots():
    from avlib import curves

    for name in curves.__all__:
        assert getattr(P, name) is getattr(curves, name) and name in P.__all__


def test_reconstruct_perfect_prediction_gives_back_the_input():
    audio = torch.randn(64, 32, generator=G)
    video = torch.randn(3, 32, 32, generator=G)
    pa, pv = patchify_audio(audio[None], 16)[0], patchify_image(video[None], 16)[0]  # [8, 256], [4, 768]
    mask_a = torch.tensor([1, 0, 1, 1, 0, 1, 1, 0.0])
    mask_v = torch.tensor([0, 1, 1, 1.0])
    # norm-pix prediction = the standardised true patch; un-normalising must give the patch back
    norm = lambda p: (p - p.mean(-1, keepdim=True)) / (p.var(-1, keepdim=True) + 1e-6).sqrt()
    r = P.reconstruct(audio, video, norm(pa), norm(pv), mask_a, mask_v, norm_pix=True)
    torch.testing.assert_close(r["a_recon"], audio, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(r["v_paste"], video, atol=1e-4, rtol=1e-4)
    # masked image: NaN exactly on masked patches (audio token 0 = lowest mel rows, first 16 frames)
    assert torch.isnan(r["a_masked"][:16, :16]).all() and not torch.isnan(r["a_masked"][16:32, :16]).any()
    assert int(torch.isnan(r["v_masked"]).sum()) == 3 * 3 * 16 * 16
    # reconstruction + visible: visible patches are the originals even for a useless prediction
    r0 = P.reconstruct(audio, video, torch.zeros_like(pa), torch.zeros_like(pv), mask_a, mask_v,
                       norm_pix=False)
    torch.testing.assert_close(r0["a_paste"][16:32, :16], audio[16:32, :16])
    assert (r0["a_paste"][:16, :16] == 0).all()


def test_inpainting_grid():
    audio, video = torch.randn(64, 32, generator=G), torch.randn(3, 32, 32, generator=G)
    fig = P.plot_inpainting(audio, video, torch.randn(8, 256, generator=G), torch.randn(4, 768, generator=G),
                            torch.tensor([1, 0] * 4), torch.tensor([1, 0, 1, 0]))
    assert len(fig.axes) == 8
    assert [ax.get_title() for ax in fig.axes[:4]] == ["original", "masked", "reconstruction",
                                                        "reconstruction + visible"]


def test_similarity_embeddings_confusion():
    labels = torch.tensor([2, 0, 1, 0, 2, 1])
    emb = torch.randn(6, 8, generator=G)
    fig = P.plot_similarity(emb @ emb.T, labels=labels, class_names=["a", "b", "c"])
    assert isinstance(fig, Figure)
    fig = P.plot_embeddings({"audio": emb, "video": emb + 0.1}, labels, ["a", "b", "c"])
    handles, names = fig.axes[0].get_legend_handles_labels()
    assert names == ["a", "b", "c", "audio", "video"]
    fig = P.plot_confusion(torch.tensor([[3, 1], [0, 4]]), ["x", "y"])
    assert fig.axes[0].get_xlabel() == "predicted"


def test_project_2d_pca_and_tsne():
    x = torch.randn(30, 5, generator=G)
    x[:, 0] *= 10  # the dominant direction
    xy = P.project_2d(x)
    assert xy.shape == (30, 2)
    assert abs(np.corrcoef(xy[:, 0], x[:, 0].numpy())[0, 1]) > 0.99
    assert P.project_2d(x, "tsne").shape == (30, 2)
    with pytest.raises(ValueError, match="unknown projection"):
        P.project_2d(x, "umap")


def test_retrieval_strip_marks_the_partner():
    frames = torch.randn(5, 3, 16, 16, generator=G)
    sim = torch.eye(5) + 0.01 * torch.arange(5.0)
    fig = P.plot_retrieval_strip(sim, 2, frames, k=3, labels=[0, 1, 0, 1, 0], class_names=["p", "q"],
                                 query_image=torch.randn(32, 16, generator=G))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[1].startswith("#1: clip 2") and fig.axes[1].title.get_color() == "green"
    assert titles[2].startswith("#2: clip 4") and fig.axes[2].title.get_color() == "darkorange"


def test_result_charts():
    fig = P.plot_bars({"AV model": {"AV": 90.0, "A": 80.0}, "A model": {"A": 85.0}})
    assert len(fig.axes[0].patches) == 4
    rows = [{"init": i, "fraction": f, "accuracy": a} for i, f, a in
            [("pretrained", 0.1, 60), ("pretrained", 1.0, 90), ("scratch", 0.1, 40), ("scratch", 1.0, 80)]]
    fig = P.plot_label_efficiency(rows)
    assert len(fig.axes[0].lines) == 2
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["10", "100"]  # percent, not 10^1 / 10^2


def test_inpainting_stages_grid():
    N = 2
    audio, video = torch.randn(N, 64, 32, generator=G), torch.randn(N, 3, 32, 32, generator=G)
    mask_a, mask_v = torch.tensor([[1, 0] * 4] * N), torch.tensor([[1, 0, 1, 0]] * N)
    preds = {f"step {s}": (torch.randn(N, 8, 256, generator=G), torch.randn(N, 4, 768, generator=G))
             for s in (0, 5, 10)}
    fig = P.plot_inpainting_stages(audio, video, preds, mask_a, mask_v, clip_names=["a", "b"])
    assert len(fig.axes) == 2 * N * 5
    assert [ax.get_title() for ax in fig.axes[:5]] == ["original", "masked", "step 0", "step 5", "step 10"]
    assert fig.axes[2 * 5].get_ylabel() == "spectrogram" and fig.axes[3 * 5].get_ylabel() == "b"
    # the pasted reconstruction shows the true visible patches (audio token 1 = mel rows 0-15, frames 16-31)
    shown = fig.axes[2].images[0].get_array()  # [F, T]: spectrogram drawn transposed
    np.testing.assert_allclose(np.asarray(shown)[:16, 16:32], audio[0, 16:32, :16].T.numpy(), rtol=1e-6)


def test_embeddings_into_an_existing_axes_without_legend():
    fig = Figure()
    left, right = fig.subplots(1, 2)
    emb, labels = torch.randn(12, 4, generator=G), [0, 1, 2] * 4
    out = P.plot_embeddings(emb, labels, ["a", "b", "c"], ax=right, legend=False, title="right panel")
    assert out is fig and len(fig.axes) == 2
    assert right.get_title() == "right panel" and right.get_legend() is None and len(right.collections) == 3
    assert not left.collections  # nothing drawn into the other panel
    assert P.plot_embeddings(emb, labels, ["a", "b", "c"], ax=left).axes[0].get_legend() is not None


def test_retrieval_strip_figsize():
    frames, sim = torch.randn(4, 3, 16, 16, generator=G), torch.eye(4)
    assert tuple(P.plot_retrieval_strip(sim, 0, frames, k=3).get_size_inches()) == (8.8, 2.6)
    assert tuple(P.plot_retrieval_strip(sim, 0, frames, k=3, figsize=(9, 2.1)).get_size_inches()) == (9, 2.1)


def test_prediction_gallery():
    probs = torch.tensor([[0.1, 0.6, 0.2, 0.1], [0.7, 0.1, 0.15, 0.05]])
    fig = P.plot_predictions(torch.randn(2, 64, 32, generator=G), torch.randn(2, 3, 32, 32, generator=G), probs,
                             [2, 0], ["a", "b", "c", "d"], titles=["x", "y"], notes=["with d", ""], k=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 6  # frame, spectrogram, probabilities per row
    bars = fig.axes[2]
    assert [t.get_text() for t in bars.get_yticklabels()] == ["b", "c"]  # top 2; the true class c is among them
    assert [tuple(np.round(p.get_facecolor()[:3], 2)) for p in bars.patches] == [(0.84, 0.15, 0.16),
                                                                                (0.17, 0.63, 0.17)]
    assert fig.axes[1].get_title() == "true: c\nwith d" and fig.axes[0].get_title() == "x"
    assert [t.get_text() for t in fig.axes[5].get_yticklabels()] == ["a", "c"]  # right: green first guess
    fig2 = P.plot_predictions(torch.randn(1, 64, 32), torch.randn(1, 3, 32, 32), probs[:1], [3], list("abcd"), k=2)
    assert [t.get_text() for t in fig2.axes[2].get_yticklabels()] == ["b", "c", "d"]  # true class appended


def test_attention_heads_figure():
    from avlib.plots import plot_attention_heads

    w = torch.rand(3, 10, 10).softmax(-1)  # [H, N, N]: 6 audio tokens on a 2 x 3 grid, then 4 video tokens
    fig = plot_attention_heads(w, len_a=6, audio_grid=(2, 3), query=4, title="t")
    assert len(fig.axes) == 6
    assert fig.axes[3].images[0].get_array().shape == (2, 3)  # bottom row: the query's row over the audio grid
