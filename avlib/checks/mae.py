"""Self-checks for notebook 07 (a masked autoencoder for one modality), with targeted hints.

* :func:`masked_mse` - ``fn(pred, target, mask, norm_pix=True) -> 0-d loss`` against
  :func:`avlib.losses.mae_loss`;
* :func:`add_mask_tokens` - ``fn(x, mask_token, ids_restore) -> [B, L, D]`` against
  :func:`avlib.models.mae.add_mask_tokens`.

Each prints one ✅ / ❌ (with a hint naming the likely mistake) / ⏭ line and returns True only on success.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from avlib.checks import FAIL, OK, first_hint, run, scalar
from avlib.losses import mae_loss, normalize_patches
from avlib.models.mae import add_mask_tokens as _ref_add_mask_tokens

__all__ = ["masked_mse", "add_mask_tokens"]


def _example(B: int = 2, L: int = 12, P: int = 16, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Fixed ``pred, target [B, L, P]`` and a mask ``[B, L]`` with 9 of 12 tokens masked per sample."""
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(B, L, P, generator=g)
    target = 3.0 * torch.randn(B, L, P, generator=g) + 5.0  # far from norm-pix units: forgetting it shows
    noise = torch.rand(B, L, generator=g)
    mask = torch.zeros(B, L)
    mask.scatter_(1, noise.argsort(1)[:, L // 4:], 1.0)  # [B, L], 1 = masked (the 9 highest-noise tokens)
    return pred, target, mask


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=1e-5))


def _loss_hint(got: torch.Tensor, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               norm_pix: bool) -> str:
    """Name the mistake a wrong loss value most likely comes from."""
    t = normalize_patches(target) if norm_pix else target
    err = ((pred - t) ** 2).mean(-1)  # [B, L] squared error per patch
    B, L = mask.shape
    P = pred.shape[-1]

    def masked_mean(e: torch.Tensor) -> torch.Tensor:
        return (e * mask).sum() / mask.sum()

    candidates: list[tuple[torch.Tensor, str]] = []
    if norm_pix:
        std_b = target.std(-1, unbiased=False, keepdim=True)  # [B, L, 1], biased
        t_b = (target - target.mean(-1, keepdim=True)) / (std_b**2 + 1e-6) ** 0.5
        candidates += [
            (masked_mean(((pred - target) ** 2).mean(-1)),
             "with norm_pix=True standardise each target patch first: (target - mean) / sqrt(var + 1e-6), "
             "mean and var over the last dim (avlib.losses.normalize_patches)."),
            (masked_mean(((pred - t_b) ** 2).mean(-1)),
             "use the unbiased variance (torch's default, target.var(dim=-1)) as MAE does."),
        ]
    else:
        candidates.append((masked_mean(((pred - normalize_patches(target)) ** 2).mean(-1)),
                           "with norm_pix=False use the target as it is: do not standardise it."))
    candidates += [
        (err.mean(), "you averaged over all patches; only the masked ones count: weight by the mask "
                     "(1 = masked)."),
        ((err * (1 - mask)).sum() / (1 - mask).sum(),
         "you averaged over the visible patches: in the mask 1 means masked, so weight by mask, "
         "not 1 - mask."),
        ((err * mask).mean(), f"divide by the number of masked patches, mask.sum() (= {int(mask.sum())} "
                              f"here), not by B * L = {B * L}."),
        (masked_mean(err * P), f"average the squared error over the P = {P} values of each patch "
                               "(.mean(dim=-1)) before averaging over patches."),
        (masked_mean((pred - t).abs().mean(-1)), "square the error: this is a mean *squared* error."),
        ((err * mask).sum(), "divide the masked sum by mask.sum() to get a mean."),
    ]
    default = ("compute err = ((pred - target) ** 2).mean(dim=-1) per patch [B, L], "
                "then (err * mask).sum() / mask.sum().")
    return first_hint(got, candidates, default)


def masked_mse(fn: Callable[..., torch.Tensor]) -> bool:
    """Check ``fn(pred [B,L,P], target [B,L,P], mask [B,L], norm_pix) -> 0-d`` on fixed examples (both
    ``norm_pix`` settings, two masks)."""
    name = "masked_mse"
    cases = [(_example(seed=0), True), (_example(seed=0), False), (_example(B=3, L=8, P=4, seed=1), True)]
    for (pred, target, mask), norm_pix in cases:
        ran, got = run(name, fn, pred.clone(), target.clone(), mask.clone(), norm_pix=norm_pix)
        if not ran:
            return False
        got = scalar(name, got, "average over the pixels of each patch, then over the masked patches of the "
                                "whole batch.")
        if got is None:
            return False
        expected = mae_loss(pred, target, mask, norm_pix=norm_pix)
        if not _close(got, expected):
            print(f"{FAIL} {name}(norm_pix={norm_pix}) = {got.item():.4f}, expected {expected.item():.4f}. "
                  f"Hint: {_loss_hint(got, pred, target, mask, norm_pix)}")
            return False
    # the loss must not depend on the predictions of visible patches
    pred, target, mask = _example(seed=2)
    moved = torch.where(mask.bool().unsqueeze(-1), pred, pred + 10.0)
    ran_a, a = run(name, fn, pred, target, mask, norm_pix=True)
    ran_b, b = run(name, fn, moved, target, mask, norm_pix=True)
    if not (ran_a and ran_b):
        return False
    tensors = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
    if not (tensors and _close(a.reshape(()), b.reshape(()))):
        print(f"{FAIL} {name}: changing the predictions of *visible* patches changed the loss; "
              "only masked patches may count.")
        return False
    print(f"{OK} {name} matches avlib.losses.mae_loss (norm_pix on and off; visible patches are ignored)")
    return True


def add_mask_tokens(fn: Callable[..., torch.Tensor]) -> bool:
    """Check ``fn(x [B,L',D], mask_token [1,1,D], ids_restore [B,L]) -> [B, L, D]`` on a fixed example."""
    name = "add_mask_tokens"
    B, L, n, D = 2, 8, 2, 4
    g = torch.Generator().manual_seed(0)
    ids_shuffle = torch.argsort(torch.rand(B, L, generator=g), dim=1)  # [B, L]
    ids_restore = torch.argsort(ids_shuffle, dim=1)  # [B, L]
    x = torch.randn(B, n, D, generator=g)  # visible tokens, encoder order
    token = torch.full((1, 1, D), -7.0)
    ran, got = run(name, fn, x.clone(), token.clone(), ids_restore.clone())
    if not ran:
        return False
    expected = _ref_add_mask_tokens(x, token, ids_restore)  # [B, L, D]
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        shape = list(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        print(f"{FAIL} {name} returned {shape}, expected {list(expected.shape)} = [B, L, D]: append "
              f"L - L' = {L - n} copies of the mask token to the {n} visible tokens.")
        return False
    if torch.equal(got, expected):
        print(f"{OK} {name} matches avlib")
        return True
    shuffled = torch.cat([x, token.expand(B, L - n, D)], dim=1)  # [B, L, D] before unshuffling
    is_token = (got == -7.0).all(-1)  # [B, L]
    if torch.equal(got, shuffled):
        hint = ("the tokens are still in encoder (shuffled) order: gather them with ids_restore, "
                "torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, D)).")
    elif torch.equal(got, torch.gather(shuffled, 1, ids_shuffle.unsqueeze(-1).expand(-1, -1, D))):
        hint = "you gathered with ids_shuffle; the inverse permutation ids_restore puts tokens back in place."
    elif int(is_token.sum()) != B * (L - n):
        hint = (f"expected {L - n} mask tokens per sample, found {is_token.sum(1).tolist()}: concatenate the "
                "visible tokens first, then the mask tokens, then unshuffle.")
    else:
        hint = ("mask tokens are in the wrong places: build cat([x, mask_token.expand(B, L - L', D)], "
                "dim=1), then gather along dim 1 with ids_restore expanded to [B, L, D].")
    print(f"{FAIL} {name}: wrong token order. Hint: {hint}")
    return False
