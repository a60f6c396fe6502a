"""The concept figures: one per notebook, drawn without errors, warnings or a dataset."""

import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from avlib import course, diagrams  # noqa: E402


def test_every_notebook_has_a_figure():
    assert sorted(diagrams.FIGURES) == [nb.number for nb in course.NOTEBOOKS]


@pytest.mark.parametrize("number", sorted(diagrams.FIGURES))
def test_figure_draws(number):
    before = set(plt.get_fignums())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. missing glyphs, tight-layout failures
        fig = diagrams.for_notebook(number)
        fig.canvas.draw()
    try:
        assert isinstance(fig, Figure)
        assert fig.get_suptitle(), "every concept figure has a title"
        assert len(set(plt.get_fignums()) - before) == 1, "one pyplot figure, so that plt.show() shows it"
    finally:
        plt.close(fig)


def test_for_notebook_accepts_ints_and_rejects_unknown():
    fig = diagrams.for_notebook(5)
    plt.close(fig)
    with pytest.raises(KeyError, match="no concept figure"):
        diagrams.for_notebook(99)


def test_masking_figure_counts_visible_tokens():
    fig = diagrams.masking(ratio=0.75)
    titles = [ax.get_title() for ax in fig.axes]
    plt.close(fig)
    assert titles == ["unstructured: 24 of 96 visible", "time: 24 of 96 visible", "freq: 24 of 96 visible"]


def test_infonce_title_is_computed():
    fig = diagrams.infonce(n=6, temperature=0.05)
    title = fig.get_suptitle()
    plt.close(fig)
    assert "chance: log 6 = 1.79" in title


def test_examples_are_deterministic():
    assert np.array_equal(diagrams.example_spectrogram(), diagrams.example_spectrogram())
    assert diagrams.example_spectrogram(T=96, F=64).shape == (64, 96)
    frame = diagrams.example_frame(32)
    assert frame.shape == (32, 32, 3) and 0 <= frame.min() and frame.max() <= 1
