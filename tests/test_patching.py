"""avlib.patching: the in-patch pixel order that defines the reconstruction target."""

import pytest
import torch

from avlib.patching import (
    audio_grid,
    audio_to_image,
    image_to_audio,
    patchify_audio,
    patchify_image,
    unpatchify_audio,
    unpatchify_image,
)


def test_audio_patch_order_is_freq_rows_then_time_columns():
    B, T, F, p = 2, 48, 32, 8
    x = torch.randn(B, T, F)
    patches = patchify_audio(x, p)
    rows, cols = audio_grid(T, F, p)
    assert (rows, cols) == (F // p, T // p)
    assert patches.shape == (B, rows * cols, p * p)
    for f in range(rows):
        for t in range(cols):
            for i in (0, 3, p - 1):  # frequency offset
                for j in (0, 5, p - 1):  # time offset
                    assert patches[1, f * cols + t, i * p + j] == x[1, p * t + j, p * f + i]


def test_image_patch_order_is_row_col_channel():
    B, H, W, p = 2, 16, 24, 8
    x = torch.randn(B, 3, H, W)
    patches = patchify_image(x, p)
    assert patches.shape == (B, (H // p) * (W // p), p * p * 3)
    for y in range(H // p):
        for xx in range(W // p):
            for i, j, c in [(0, 0, 0), (1, 2, 1), (p - 1, p - 1, 2), (4, 0, 2)]:
                assert patches[0, y * (W // p) + xx, (i * p + j) * 3 + c] == x[0, c, p * y + i, p * xx + j]


def test_round_trips():
    a = torch.randn(3, 64, 32)
    assert torch.equal(unpatchify_audio(patchify_audio(a, 16), 64, 32, 16), a)
    assert torch.equal(image_to_audio(audio_to_image(a)), a)
    assert audio_to_image(a).shape == (3, 1, 32, 64)  # [B, 1, F, T]: rows = frequency
    v = torch.randn(2, 3, 32, 48)
    assert torch.equal(unpatchify_image(patchify_image(v, 16), (32, 48), 16), v)


def test_bad_sizes_raise_clear_errors():
    with pytest.raises(ValueError, match="multiple of the patch size"):
        patchify_audio(torch.randn(1, 50, 128), 16)
    with pytest.raises(ValueError, match=r"\[B, T, F\]"):
        patchify_audio(torch.randn(50, 128), 16)
    with pytest.raises(ValueError, match="do not fit"):
        unpatchify_image(torch.randn(1, 5, 768), 32, 16)
