"""2-D sin-cos positional embeddings laid out exactly as MAE / CAV-MAE, and adapting them to other grids.

Layout of :func:`get_2d_sincos_pos_embed` (``D`` channels, a ``grid_h x grid_w`` grid, token ``y * grid_w +
x``):

* channels ``[0, D/2)`` encode the **column** index ``x`` (audio: time), channels ``[D/2, D)`` the **row**
  index ``y`` (audio: frequency);
* within each half, a sin block then a cos block: ``sin(pos * w_k)``, ``cos(pos * w_k)``, ``w_k =
  10000^(-k/(D/4))``, ``k = 0 .. D/4 - 1``.

Computed in float64, then cast to float32, like the reference. Note: timm's ``build_sincos2d_pos_embed`` holds
the same values in another channel order ([sin y, sin x, cos y, cos x]), so it cannot load CAV-MAE
checkpoints. No cls row anywhere (CAV-MAE has no cls token).
"""

from __future__ import annotations

import torch
from timm.layers import resample_abs_pos_embed

__all__ = ["get_1d_sincos_pos_embed", "get_2d_sincos_pos_embed", "adapt_pos_embed"]


def get_1d_sincos_pos_embed(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """``[M]`` positions -> ``[M, dim]`` float64 table: ``[sin(pos * w_k) | cos(pos * w_k)]``, ``k <
    dim/2``."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding width must be even, got {dim}.")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega  # [dim/2]
    out = pos.reshape(-1).to(torch.float64)[:, None] * omega[None, :]  # [M, dim/2], outer product
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)  # [M, dim]


def get_2d_sincos_pos_embed(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Fixed 2-D sin-cos table ``[grid_h * grid_w, dim]`` (float32), token ``y * grid_w + x``; layout: module
    doc."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding width must be a multiple of 4, got {dim}.")
    ys, xs = torch.meshgrid(torch.arange(grid_h, dtype=torch.float32),
                            torch.arange(grid_w, dtype=torch.float32), indexing="ij")  # [grid_h, grid_w] each
    emb_x = get_1d_sincos_pos_embed(dim // 2, xs)  # [N, dim/2], columns first (as MAE)
    emb_y = get_1d_sincos_pos_embed(dim // 2, ys)  # [N, dim/2]
    return torch.cat([emb_x, emb_y], dim=1).to(torch.float32)  # [N, dim]


def adapt_pos_embed(pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int],
                    mode: str = "trim") -> torch.Tensor:
    """Adapt a positional table ``[N, D]`` or ``[1, N, D]`` from ``old_grid`` to ``new_grid`` (rows, cols).

    ``mode``:

    * ``"trim"`` - keep the first rows / columns (CAV-MAE's advice for shorter clips, e.g. 5-s audio: the
      first ``T/16`` time columns). The new grid must not be larger in either direction.
    * ``"pad"`` - trim where smaller and, where larger, continue the table by repeating its last row / column.
    * ``"interpolate"`` - bicubic resampling of the grid (``timm.layers.resample_abs_pos_embed``, as MAE does
      for other image sizes).
    * ``"sincos"`` - recompute the fixed sin-cos table for the new grid (exact for fixed, untrained tables).
    """
    squeeze = pos.ndim == 2
    table = pos if squeeze else pos[0]  # [N, D]
    (h0, w0), (h1, w1) = old_grid, new_grid
    N, D = table.shape
    if N != h0 * w0:
        raise ValueError(f"positional table has {N} tokens, but old_grid {old_grid} needs {h0 * w0}.")
    if mode == "sincos":
        out = get_2d_sincos_pos_embed(D, h1, w1).to(table)
    else:
        grid = table.reshape(h0, w0, D)  # [h0, w0, D], token y * w0 + x
        if mode == "trim":
            if h1 > h0 or w1 > w0:
                raise ValueError(f"cannot trim a {old_grid} grid to a larger {new_grid} grid; use "
                                 "mode='pad', 'interpolate' or 'sincos'.")
            grid = grid[:h1, :w1]  # [h1, w1, D]
        elif mode == "pad":
            grid = grid[:h1, :w1]
            if h1 > h0:
                grid = torch.cat([grid, grid[-1:].expand(h1 - h0, -1, -1)], dim=0)  # [h1, w, D]
            if w1 > w0:
                grid = torch.cat([grid, grid[:, -1:].expand(-1, w1 - w0, -1)], dim=1)  # [h1, w1, D]
        elif mode == "interpolate":  # timm's resampling, without its default anti-aliasing (as MAE)
            grid = resample_abs_pos_embed(table[None], [h1, w1], [h0, w0], num_prefix_tokens=0,
                                          antialias=False)[0].reshape(h1, w1, D)  # [1, h1*w1, D] -> [h1, w1, D]
        else:
            raise ValueError(f"unknown mode {mode!r}; choose 'trim', 'pad', 'interpolate' or 'sincos'.")
        out = grid.reshape(h1 * w1, D)  # [N', D]
    return out if squeeze else out.unsqueeze(0)  # [N', D] or [1, N', D]
