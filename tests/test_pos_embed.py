"""avlib.pos_embed: MAE / CAV-MAE sin-cos layout and adapting tables to other clip lengths."""

import math

import pytest
import torch
from timm.layers import build_sincos2d_pos_embed

from avlib.pos_embed import adapt_pos_embed, get_2d_sincos_pos_embed


def test_layout_columns_first_then_rows_sin_then_cos():
    D, gh, gw = 32, 4, 6
    pe = get_2d_sincos_pos_embed(D, gh, gw)
    assert pe.shape == (gh * gw, D) and pe.dtype == torch.float32
    q = D // 4
    for y in range(gh):
        for x in range(gw):
            row = pe[y * gw + x]
            assert math.isclose(row[0], math.sin(x), abs_tol=1e-6)  # omega_0 = 1, first half = column x
            assert math.isclose(row[q], math.cos(x), abs_tol=1e-6)
            assert math.isclose(row[2 * q], math.sin(y), abs_tol=1e-6)  # second half = row y
            assert math.isclose(row[3 * q + 1], math.cos(y * 10000 ** (-1 / q)), abs_tol=1e-6)
    grid = pe.reshape(gh, gw, D)
    assert torch.equal(grid[:, :, : D // 2], grid[:1, :, : D // 2].expand(gh, -1, -1))  # depends on x only
    assert torch.equal(grid[:, :, D // 2:], grid[:, :1, D // 2:].expand(-1, gw, -1))  # depends on y only


def test_timm_table_holds_the_same_values_in_another_channel_order():
    D, q = 64, 16
    ours = get_2d_sincos_pos_embed(D, 8, 16)
    timm_pe = build_sincos2d_pos_embed([8, 16], dim=D)  # [sin y, sin x, cos y, cos x]
    reordered = torch.cat([ours[:, 2 * q:3 * q], ours[:, :q], ours[:, 3 * q:], ours[:, q:2 * q]], dim=1)
    assert (reordered - timm_pe).abs().max() < 1e-5
    assert (ours - timm_pe).abs().max() > 1.0  # so timm's table cannot replace ours


def test_trim_of_sincos_equals_sincos_of_shorter_grid():
    full = get_2d_sincos_pos_embed(48, 8, 64)[None]  # 10-s clip
    short = adapt_pos_embed(full, (8, 64), (8, 32), mode="trim")  # 5-s clip
    assert torch.equal(short, get_2d_sincos_pos_embed(48, 8, 32)[None])
    assert torch.equal(adapt_pos_embed(full, (8, 64), (8, 32), mode="sincos"), short)


def test_pad_interpolate_and_errors():
    pe = torch.randn(6 * 5, 8)
    padded = adapt_pos_embed(pe, (6, 5), (6, 7), mode="pad").reshape(6, 7, 8)
    assert torch.equal(padded[:, :5], pe.reshape(6, 5, 8))
    assert torch.equal(padded[:, 6], pe.reshape(6, 5, 8)[:, 4])
    same = adapt_pos_embed(pe, (6, 5), (6, 5), mode="interpolate")
    assert torch.allclose(same, pe, atol=1e-6)
    assert adapt_pos_embed(pe, (6, 5), (3, 9), mode="interpolate").shape == (27, 8)
    with pytest.raises(ValueError, match="larger"):
        adapt_pos_embed(pe, (6, 5), (6, 7), mode="trim")
    with pytest.raises(ValueError, match="old_grid"):
        adapt_pos_embed(pe, (5, 5), (5, 5))
    with pytest.raises(ValueError, match="unknown mode"):
        adapt_pos_embed(pe, (6, 5), (6, 5), mode="nearest")
