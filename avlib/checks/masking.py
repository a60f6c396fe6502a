"""Self-checks for notebook 05 (masking): MAE's random masking and CAV-MAE's time masking.

A masking function returns ``(x_kept [B, len_keep, D], mask [B, L], ids_restore [B, L], ...)``; extra
items (``ids_keep``) and avlib's :class:`avlib.masking.Masked` are accepted. The checks first test that the
result is a *valid* masking (right counts, 1 = masked, mask and kept tokens agree, ``ids_restore`` undoes the
shuffle), then whether it equals :mod:`avlib.masking` for the same ``torch.Generator`` seed, and print a
targeted hint otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from avlib import masking
from avlib.checks import FAIL, OK, run

__all__ = ["random_masking", "time_masking"]


def _tokens(B: int, L: int, D: int = 4, seed: int = 123) -> torch.Tensor:
    """``[B, L, D]`` random tokens (all distinct, so a kept token tells where it came from)."""
    return torch.randn(B, L, D, generator=torch.Generator().manual_seed(seed))


def _run(name: str, fn: Callable, *args, **kwargs) -> tuple[bool, tuple | None]:
    """Call ``fn``; print ⏭ / ❌ for a skipped, crashing or ill-typed result. Returns (ok, first 3 items)."""
    ran, out = run(name, fn, *args, **kwargs)
    if not ran:
        return False, None
    if not isinstance(out, (tuple, list)) or len(out) < 3 or \
            not all(isinstance(t, torch.Tensor) for t in out[:3]):
        print(f"{FAIL} {name} must return (x_kept, mask, ids_restore) tensors, got {type(out).__name__}.")
        return False, None
    return True, tuple(out[:3])


def _kept_ids(x: torch.Tensor, kept: torch.Tensor) -> torch.Tensor | None:
    """Token ids ``[B, len_keep]`` of the ``kept`` rows in ``x [B, L, D]``; None if a row is not in x."""
    match = (kept[:, :, None, :] == x[:, None, :, :]).all(-1)  # [B, len_keep, L]
    if not bool((match.sum(-1) == 1).all()):
        return None
    return match.float().argmax(-1)  # [B, len_keep]


def _validate(name: str, x: torch.Tensor, ratio: float, out: tuple) -> str | None:
    """None if ``out = (x_kept, mask, ids_restore)`` is a valid masking of ``x`` at ``ratio``, else a hint."""
    kept, mask, ids_restore = out
    B, L, D = x.shape
    n_keep = masking.num_kept(L, ratio)
    if kept.ndim != 3 or kept.shape[0] != B or kept.shape[2] != D:
        return f"x_kept has shape {list(kept.shape)}, expected [B, len_keep, D] = {[B, n_keep, D]}."
    if kept.shape[1] != n_keep:
        if kept.shape[1] == int(L * ratio):
            return (f"your mask keeps {kept.shape[1]} tokens = int(L·ratio); ratio is the fraction *masked*: "
                    f"keep int({L}·(1−{ratio:g})) = {n_keep}.")
        return (f"your mask keeps {kept.shape[1]} tokens, expected {n_keep} = int({L}·(1−{ratio:g})) "
                "(compute it with int(), as MAE does).")
    if tuple(mask.shape) != (B, L):
        return f"mask has shape {list(mask.shape)}, expected [B, L] = {[B, L]}."
    m = mask.detach().float()
    if not bool(((m == 0) | (m == 1)).all()):
        return "the mask must hold only 0 (visible) and 1 (masked)."
    if bool((m.sum(1) == n_keep).all()) and n_keep != L - n_keep:
        return "the mask is inverted: 1 means masked (removed), 0 means visible."
    if not bool((m.sum(1) == L - n_keep).all()):
        return f"every row of the mask must hold L − len_keep = {L - n_keep} ones."
    ids = _kept_ids(x, kept.detach().to(x.dtype))
    if ids is None:
        return ("x_kept's rows are not tokens of x: gather along dim 1 with index "
                "ids_keep.unsqueeze(-1).expand(-1, -1, D).")
    if not bool((torch.gather(m, 1, ids) == 0).all()):
        return ("the mask disagrees with the kept tokens; build it in shuffled order ([0]*len_keep + "
                "[1]*rest) and un-shuffle it with torch.gather(mask, 1, ids_restore).")
    if tuple(ids_restore.shape) != (B, L) or ids_restore.dtype not in (torch.int64, torch.int32):
        return f"ids_restore must be an integer [B, L] = {[B, L]} tensor."
    full = torch.cat([kept.detach().to(x.dtype), torch.zeros(B, L - n_keep, D)], dim=1)  # [B, L, D]
    restored = torch.gather(full, 1, ids_restore.long().unsqueeze(-1).expand(-1, -1, D))  # [B, L, D]
    visible = m == 0
    if not torch.equal(restored[visible], x[visible]):
        return ("ids_restore does not undo the shuffle: it is the inverse permutation, "
                "ids_restore = torch.argsort(ids_shuffle, dim=1).")
    return None


def _same(a: tuple, b: masking.Masked) -> bool:
    return (torch.equal(a[0].detach(), b.x) and torch.equal(a[1].detach().float(), b.mask.float())
            and torch.equal(a[2].long(), b.ids_restore))


def random_masking(fn: Callable[..., tuple]) -> bool:
    """Check ``fn(x [B, L, D], ratio, generator) -> (x_kept, mask, ids_restore[, ...])`` against
    :func:`avlib.masking.random_masking` with the same generator seed."""
    name = "random_masking"
    for (B, L), ratio in (((2, 48), 0.75), ((3, 10), 0.5), ((2, 196), 0.75)):
        x = _tokens(B, L)
        ok, out = _run(name, fn, x.clone(), ratio, generator=torch.Generator().manual_seed(0))
        if not ok:
            return False
        if (hint := _validate(name, x, ratio, out)) is not None:
            print(f"{FAIL} {name} on x of shape {[B, L, 4]}, ratio {ratio:g}: {hint}")
            return False
        _, again = _run(name, fn, x.clone(), ratio, generator=torch.Generator().manual_seed(0))
        if again is None or not torch.equal(again[1].float(), out[1].float()):
            print(f"{FAIL} {name}: two calls with equally seeded generators give different masks; draw the "
                  "noise from the generator: torch.rand(B, L, generator=generator).")
            return False
        ref = masking.random_masking(x, ratio, generator=torch.Generator().manual_seed(0))
        if _same(out, ref):
            continue
        kept_ids = _kept_ids(x, out[0].detach().to(x.dtype))
        if torch.equal(kept_ids.sort(1).values, ref.ids_keep.sort(1).values):
            hint = ("the right tokens are kept, but not in ascending-noise order; keep "
                    "ids_shuffle[:, :len_keep] as it is (do not sort it by position).")
        else:
            noise = masking.draw_noise(B, L, torch.Generator().manual_seed(0))
            highest = torch.argsort(noise, dim=1, descending=True)[:, :kept_ids.shape[1]]
            if torch.equal(kept_ids.sort(1).values, highest.sort(1).values):
                hint = "you keep the highest-noise tokens; sort ascending and keep the lowest, as MAE does."
            else:
                hint = ("a valid masking but another random draw: draw the noise once as "
                        "torch.rand(B, L, generator=generator) and keep the tokens with the lowest noise "
                        "(ids_shuffle = torch.argsort(noise, dim=1)).")
        print(f"{FAIL} {name} differs from avlib for x of shape {[B, L, 4]}, ratio {ratio:g}: {hint}")
        return False
    print(f"{OK} {name} matches avlib (3 shapes and ratios, same generator seed)")
    return True


def time_masking(fn: Callable[..., tuple]) -> bool:
    """Check ``fn(x [B, L, D], ratio, grid, generator) -> (x_kept, mask, ids_restore[, ...])``: a valid
    masking in which ``int(cols * ratio)`` whole time columns of the ``(rows, cols)`` grid are masked.

    Passes for any valid random draw; says whether it is also identical to :func:`avlib.masking.time_masking`.
    """
    name = "time_masking"
    identical = True
    for (B, rows, cols), ratio in (((4, 4, 10), 0.75), ((2, 8, 6), 0.75), ((3, 8, 25), 0.6)):
        L = rows * cols
        x = _tokens(B, L)
        ok, out = _run(name, fn, x.clone(), ratio, (rows, cols), generator=torch.Generator().manual_seed(0))
        if not ok:
            return False
        if (hint := _validate(name, x, ratio, out)) is not None:
            print(f"{FAIL} {name} on a {rows}x{cols} grid, ratio {ratio:g}: {hint}")
            return False
        m = out[1].detach().float().reshape(B, rows, cols)  # [B, rows (freq), cols (time)]
        full_cols = (m.sum(1) == rows).sum(1)  # [B] fully masked time columns
        full_rows = (m.sum(2) == cols).sum(1)  # [B] fully masked frequency rows
        n_t = int(cols * ratio)
        if bool((full_cols < n_t).any()):
            if bool((full_rows >= int(rows * ratio)).all()) and int(rows * ratio) > 0:
                hint = ("you masked frequency rows; time runs along the columns of the grid "
                        "(token = f * cols + t), so mask whole columns t.")
            else:
                hint = (f"expected at least {n_t} = int({cols}·{ratio:g}) of {cols} time columns fully "
                        f"masked, found {int(full_cols.min())}; give every token of a chosen column noise "
                        "1.1 (above any U(0,1) draw) before the argsort.")
            print(f"{FAIL} {name} on a {rows}x{cols} (freq x time) grid, ratio {ratio:g}: {hint}")
            return False
        chosen = m.sum(1) == rows  # [B, cols]
        if B > 1 and bool((chosen == chosen[:1]).all()):
            print(f"{FAIL} {name}: every sample masks the same time columns; draw the columns per sample "
                  "(noise of shape [B, cols]).")
            return False
        _, again = _run(name, fn, x.clone(), ratio, (rows, cols), generator=torch.Generator().manual_seed(0))
        if again is None or not torch.equal(again[1].float(), out[1].float()):
            print(f"{FAIL} {name}: equally seeded generators give different masks; take all randomness from "
                  "the generator.")
            return False
        ref = masking.time_masking(x, ratio, (rows, cols), generator=torch.Generator().manual_seed(0))
        identical &= _same(out, ref)
    note = ("identical to avlib.masking.time_masking for the same seed" if identical else
            "valid, though another random draw than avlib (avlib draws token noise [B, L], then column noise "
            "[B, cols])")
    print(f"{OK} {name}: whole time columns masked, counts right in 3 grids; {note}")
    return True
