"""Token masking for the masked autoencoder: unstructured (MAE) and structured audio masks (time / freq /
time-freq).

Every function works on a whole batch at once (no Python loop over samples) and takes its randomness either as
explicit ``noise`` or from a ``torch.Generator`` (``None`` uses torch's global RNG, as the reference does).

Rule shared by all modes (CAV-MAE / MAE): per sample, sort the noise ascending, keep the first
``len_keep = int(L * (1 - ratio))`` token ids **in that sorted order** (the encoder sees the visible tokens in
ascending-noise order, not in position order), mask the rest. Outputs, with ``1 = masked`` in the mask:

* ``x``           ``[B, len_keep, D]``  the kept tokens (``x[b, k] = input[b, ids_keep[b, k]]``)
* ``mask``        ``[B, L]``            0 = visible, 1 = masked, original token order
* ``ids_restore`` ``[B, L]``            ``argsort(ids_shuffle)``: gathering ``[kept ; mask tokens]`` with it
  restores the original order
* ``ids_keep``    ``[B, len_keep]``     ids of the kept tokens, in the order fed to the encoder

Structured modes raise the noise of whole time columns and/or frequency rows of the audio grid
(``rows = F/p`` frequency rows x ``cols = T/p`` time columns, token ``f * cols + t``) above 1, so they are
masked first; the remaining masked tokens are the highest-noise ones elsewhere. The masked line counts are
``time: int(cols * r)``, ``freq: int(rows * r)``, ``tf: int(cols * r * 0.7)`` columns and ``int(rows * r *
0.7)`` rows (as the reference). Deliberate difference in ``tf``: when those lines cover more tokens than ``L -
len_keep`` (the reference at 8 x 64 and r = 0.75: 33 columns + 4 rows = 388 > 384, so 4 tokens of "masked"
lines stay visible by tie-break), avlib drops columns (then rows) until the lines fit, so masked lines are
always masked completely.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = [
    "Masked", "MASK_MODES", "num_kept", "draw_noise", "mask_from_noise", "random_masking", "structured_noise",
    "structured_masking", "time_masking", "freq_masking", "time_freq_masking", "mask_tokens",
]

MASK_MODES = ("unstructured", "time", "freq", "tf")
_LINE_NOISE = 1.1  # noise given to tokens of masked lines: above every U(0,1) draw, so they sort last


class Masked(NamedTuple):
    """Result of a masking call (unpacks as ``x, mask, ids_restore, ids_keep``)."""

    x: torch.Tensor  # [B, len_keep, D]
    mask: torch.Tensor  # [B, L], 1 = masked
    ids_restore: torch.Tensor  # [B, L]
    ids_keep: torch.Tensor  # [B, len_keep]


def num_kept(L: int, ratio: float) -> int:
    """Number of visible tokens ``int(L * (1 - ratio))`` (the reference's rounding)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}.")
    return int(L * (1 - ratio))


def draw_noise(B: int, L: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
    """U(0,1) noise ``[B, L]`` from ``generator`` (on the generator's device, then moved) or the global
    RNG."""
    if generator is None:
        return torch.rand(B, L, device=device)
    return torch.rand(B, L, generator=generator, device=generator.device).to(device)


def mask_from_noise(noise: torch.Tensor, len_keep: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise ``[B, L]`` -> ``(mask [B, L], ids_restore [B, L], ids_keep [B, len_keep])`` (lowest noise is
    kept)."""
    B, L = noise.shape
    ids_shuffle = torch.argsort(noise, dim=1, stable=True)  # [B, L], ascending noise
    ids_restore = torch.argsort(ids_shuffle, dim=1)  # [B, L], inverse permutation
    ids_keep = ids_shuffle[:, :len_keep]  # [B, len_keep]
    mask = torch.ones(B, L, device=noise.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, dim=1, index=ids_restore)  # [B, L], back to the original token order
    return mask, ids_restore, ids_keep


def _gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return torch.gather(x, dim=1, index=ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # [B, len(ids), D]


def random_masking(x: torch.Tensor, ratio: float, noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> Masked:
    """Unstructured masking of ``x [B, L, D]``: keep the ``int(L*(1-ratio))`` tokens with the lowest noise."""
    B, L, _ = x.shape
    if noise is None:
        noise = draw_noise(B, L, generator, x.device)
    elif noise.shape != (B, L):
        raise ValueError(f"noise must have shape [B, L] = {[B, L]}, got {list(noise.shape)}.")
    mask, ids_restore, ids_keep = mask_from_noise(noise.to(x.device), num_kept(L, ratio))
    return Masked(_gather_tokens(x, ids_keep), mask.to(x.dtype), ids_restore, ids_keep)


def _line_counts(grid: tuple[int, int], ratio: float, mode: str) -> tuple[int, int]:
    """(masked time columns, masked frequency rows) for a structured mode; see the module docstring."""
    rows, cols = grid
    if mode == "time":
        return int(cols * ratio), 0
    if mode == "freq":
        return 0, int(rows * ratio)
    if mode == "tf":
        n_t, n_f = int(cols * ratio * 0.7), int(rows * ratio * 0.7)
        budget = rows * cols - num_kept(rows * cols, ratio)  # tokens that must be masked
        while n_t * rows + n_f * cols - n_t * n_f > budget:  # lines must fit into the masked budget
            if n_t > 0:
                n_t -= 1
            else:
                n_f -= 1
        return n_t, n_f
    raise ValueError(f"unknown structured mask mode {mode!r}; choose one of {MASK_MODES[1:]}.")


def _choose_lines(B: int, n_lines: int, n_masked: int, generator: torch.Generator | None,
                  device: torch.device) -> torch.Tensor:
    """Boolean ``[B, n_lines]`` with exactly ``n_masked`` random True per row (vectorised)."""
    order = torch.argsort(draw_noise(B, n_lines, generator, device), dim=1, stable=True)  # [B, n_lines]
    chosen = torch.zeros(B, n_lines, dtype=torch.bool, device=device)
    return chosen.scatter_(1, order[:, :n_masked], True)


def structured_noise(B: int, grid: tuple[int, int], ratio: float, mode: str,
                     noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Noise ``[B, rows*cols]`` whose chosen time columns / frequency rows are set to 1.1 (masked first).

    Draw order from ``generator``: token noise ``[B, L]`` (unless given), then columns ``[B, cols]``, then
    rows ``[B, rows]`` (only for the line kinds the mode uses).
    """
    rows, cols = grid
    L = rows * cols
    noise = draw_noise(B, L, generator, device) if noise is None else noise.to(device)
    if noise.shape != (B, L):
        raise ValueError(f"noise must have shape [B, L] = {[B, L]} for a {rows}x{cols} grid, got "
                         f"{list(noise.shape)}.")
    n_t, n_f = _line_counts(grid, ratio, mode)
    dev = noise.device
    lines = torch.zeros(B, rows, cols, dtype=torch.bool, device=dev)  # [B, rows (freq), cols (time)]
    if mode in ("time", "tf"):
        lines |= _choose_lines(B, cols, n_t, generator, dev)[:, None, :]  # [B, 1, cols] broadcast over rows
    if mode in ("freq", "tf"):
        lines |= _choose_lines(B, rows, n_f, generator, dev)[:, :, None]  # [B, rows, 1] broadcast over cols
    return torch.where(lines.reshape(B, L), torch.full_like(noise, _LINE_NOISE), noise)  # [B, L]


def structured_masking(x: torch.Tensor, ratio: float, grid: tuple[int, int], mode: str = "time",
                       noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> Masked:
    """Structured audio masking of ``x [B, L, D]`` on a ``(rows, cols)`` (freq, time) grid: mode
    time/freq/tf."""
    B, L, _ = x.shape
    if grid[0] * grid[1] != L:
        raise ValueError(f"grid {grid} has {grid[0] * grid[1]} tokens but x has L={L}.")
    noise = structured_noise(B, grid, ratio, mode, noise=noise, generator=generator, device=x.device)
    return random_masking(x, ratio, noise=noise)


def time_masking(x: torch.Tensor, ratio: float, grid: tuple[int, int], noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> Masked:
    """Mask ``int(cols * ratio)`` whole time columns (+ random tokens up to the ratio)."""
    return structured_masking(x, ratio, grid, "time", noise, generator)


def freq_masking(x: torch.Tensor, ratio: float, grid: tuple[int, int], noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> Masked:
    """Mask ``int(rows * ratio)`` whole frequency rows (+ random tokens up to the ratio)."""
    return structured_masking(x, ratio, grid, "freq", noise, generator)


def time_freq_masking(x: torch.Tensor, ratio: float, grid: tuple[int, int], noise: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> Masked:
    """Mask whole time columns and frequency rows (``0.7 * ratio`` of each, fitted to the budget)."""
    return structured_masking(x, ratio, grid, "tf", noise, generator)


def mask_tokens(x: torch.Tensor, ratio: float, mode: str = "unstructured",
                grid: tuple[int, int] | None = None, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> Masked:
    """Dispatch on ``mode`` (one of :data:`MASK_MODES`); structured modes need the audio ``grid``."""
    if mode == "unstructured":
        return random_masking(x, ratio, noise=noise, generator=generator)
    if mode not in MASK_MODES:
        raise ValueError(f"unknown mask mode {mode!r}; choose one of {MASK_MODES}.")
    if grid is None:
        raise ValueError(f"mask mode {mode!r} needs the (rows, cols) token grid.")
    return structured_masking(x, ratio, grid, mode, noise=noise, generator=generator)
