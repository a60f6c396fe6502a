"""Self-checks of notebook 07 (``avlib.checks.mae``): right answers pass, typical mistakes get their hint."""

import pytest
import torch

from avlib import checks
from avlib.losses import mae_loss, normalize_patches
from avlib.models.mae import add_mask_tokens


def _err(pred, target, norm_pix):
    t = normalize_patches(target) if norm_pix else target
    return ((pred - t) ** 2).mean(-1)  # [B, L]


def good_mse(pred, target, mask, norm_pix=True):
    return (_err(pred, target, norm_pix) * mask).sum() / mask.sum()


def all_patches(pred, target, mask, norm_pix=True):
    return _err(pred, target, norm_pix).mean()


def visible_only(pred, target, mask, norm_pix=True):
    return (_err(pred, target, norm_pix) * (1 - mask)).sum() / (1 - mask).sum()


def no_norm_pix(pred, target, mask, norm_pix=True):
    return _err(pred, target, False).mul(mask).sum() / mask.sum()


def biased_var(pred, target, mask, norm_pix=True):
    if norm_pix:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, unbiased=False, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    return (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()


def mean_over_bl(pred, target, mask, norm_pix=True):
    return (_err(pred, target, norm_pix) * mask).mean()


def per_patch(pred, target, mask, norm_pix=True):
    return _err(pred, target, norm_pix) * mask  # [B, L]: not reduced


@pytest.mark.parametrize("fn, needle", [
    (all_patches, "all patches"),
    (visible_only, "1 means masked"),
    (no_norm_pix, "standardise each target patch"),
    (biased_var, "unbiased variance"),
    (mean_over_bl, "mask.sum()"),
    (per_patch, "one number"),
])
def test_masked_mse_wrong_versions_get_their_hint(fn, needle, run_check):
    run_check.fails(checks.mae.masked_mse, fn, hint=needle)


def test_masked_mse_right_versions_pass(run_check):
    assert checks.mae.masked_mse(good_mse) is True
    run_check.passes(checks.mae.masked_mse, mae_loss)


def test_masked_mse_skipped(run_check):
    run_check.skips(checks.mae.masked_mse)


def _no_unshuffle(x, mask_token, ids_restore):
    B, n, D = x.shape
    return torch.cat([x, mask_token.expand(B, ids_restore.shape[1] - n, D)], dim=1)


def _crash(x, mask_token, ids_restore):
    return x[:, :, :, 0]


def test_add_mask_tokens_verdicts(capsys, run_check):
    run_check.passes(checks.mae.add_mask_tokens, add_mask_tokens)
    run_check.fails(checks.mae.add_mask_tokens, _no_unshuffle, hint="ids_restore")
    assert checks.mae.add_mask_tokens(_crash) is False
    assert "raised IndexError" in capsys.readouterr().out
    run_check.skips(checks.mae.add_mask_tokens)
