"""avlib.losses: norm-pix MAE on masked patches only, single-direction InfoNCE, contrastive accuracy."""

import math

import pytest
import torch
import torch.nn.functional as F

from avlib.losses import contrastive_accuracy, contrastive_logits, info_nce, mae_loss, normalize_patches


def test_normalize_patches_uses_the_unbiased_variance():
    t = torch.randn(2, 5, 12)
    manual = (t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, unbiased=True, keepdim=True) + 1e-6)
    assert torch.allclose(normalize_patches(t), manual, atol=1e-6)
    biased = (t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, unbiased=False, keepdim=True) + 1e-6)
    assert not torch.allclose(normalize_patches(t), biased, atol=1e-3)


def test_mae_loss_counts_masked_patches_only():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 6, 8, generator=g), torch.randn(2, 6, 8, generator=g)
    mask = torch.tensor([[1, 0, 1, 0, 0, 1], [0, 0, 1, 1, 1, 0]], dtype=torch.float32)
    per_patch = ((pred - target) ** 2).mean(-1)
    assert torch.isclose(mae_loss(pred, target, mask, norm_pix=False), per_patch[mask.bool()].mean())
    changed = pred.clone()
    changed[mask == 0] += 5.0  # visible patches do not count
    assert torch.equal(mae_loss(changed, target, mask), mae_loss(pred, target, mask))
    with pytest.raises(ValueError, match="same shape"):
        mae_loss(pred, target[:, :5], mask)


def test_info_nce_single_direction_normalises_columns_over_audios():
    g = torch.Generator().manual_seed(1)
    a, v = torch.randn(4, 16, generator=g), torch.randn(4, 16, generator=g)
    S = F.normalize(a, dim=-1) @ F.normalize(v, dim=-1).T / 0.05
    assert torch.allclose(contrastive_logits(a, v), S, atol=1e-5)
    dim0 = -torch.diag(S.log_softmax(dim=0)).mean()
    dim1 = -torch.diag(S.log_softmax(dim=1)).mean()
    assert torch.isclose(info_nce(a, v), dim0, atol=1e-5)
    assert not torch.isclose(info_nce(a, v), dim1, atol=1e-3)
    assert torch.isclose(info_nce(a, v, bidirectional=True), (dim0 + dim1) / 2, atol=1e-5)
    tenth = -torch.diag((S / 2).log_softmax(0)).mean()
    assert torch.isclose(info_nce(a, v, torch.tensor(0.1)), tenth, atol=1e-5)
    assert info_nce(a, a, 0.01) < 1e-3  # perfectly aligned pairs


def test_contrastive_accuracy():
    a = torch.eye(4)
    assert contrastive_accuracy(a, a).item() == 1.0
    assert contrastive_accuracy(a, a[[1, 0, 3, 2]]).item() == 0.0
    v = a.clone()
    v[0] = a[1]  # video 0 looks like audio 1: its column picks audio 1; row 0 still picks nothing better
    assert math.isclose(contrastive_accuracy(a, v).item(), 0.75)
    assert contrastive_accuracy(a, v, bidirectional=True).item() < 1.0
