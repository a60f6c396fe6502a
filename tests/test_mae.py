"""The single-modality masked autoencoder ``avlib.models.mae``."""

import pytest
import torch

from avlib.blocks import Block
from avlib.losses import normalize_patches
from avlib.models.config import get_config
from avlib.models.mae import MAE, MAEConfig, MAEOutput, add_mask_tokens, unnormalize_patches

# small and fast: 8 x 6 = 48 audio tokens (12 visible at 75 %), 2 + 1 blocks at width 32
SMALL = dict(audio_length=96, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=16, decoder_depth=1,
             decoder_num_heads=2)


def _model(seed: int = 0, **kw) -> MAE:
    torch.manual_seed(seed)
    return MAE(MAEConfig(**{**SMALL, **kw}))


def _audio(B: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(B, 96, 128, generator=torch.Generator().manual_seed(seed))


def test_shapes_audio():
    m = _model()
    out = m(_audio(), 0.75, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, MAEOutput)
    assert out.loss.shape == ()
    assert out.pred.shape == (3, 48, 256)
    assert out.mask.shape == out.ids_restore.shape == (3, 48)
    assert out.ids_keep.shape == (3, 12)
    assert out.latent.shape == (3, 12, 32)
    assert out.mask.sum(1).tolist() == [36.0] * 3
    assert m.forward_features(_audio()).shape == (3, 48, 32)


def test_shapes_image():
    m = _model(modality="image", img_size=32)  # 2 x 2 = 4 tokens, 1 visible
    x = torch.randn(2, 3, 32, 32)
    out = m(x, 0.75, generator=torch.Generator().manual_seed(0))
    assert out.pred.shape == (2, 4, 16 * 16 * 3)
    assert out.latent.shape == (2, 1, 32)
    assert torch.equal(m.unpatchify(m.patchify(x)), x)


def test_config_sizes_and_errors():
    cfg = MAEConfig()
    assert cfg.grid == (8, 25) and cfg.num_patches == 200 and cfg.patch_dim == 256
    assert MAEConfig(modality="image").grid == (6, 6)
    assert MAEConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="multiple of the patch size"):
        MAEConfig(audio_length=100)
    with pytest.raises(ValueError, match="modality"):
        MAEConfig(modality="video")
    with pytest.raises(ValueError, match="images use 'unstructured'"):
        MAEConfig(modality="image", mask_mode="time")
    with pytest.raises(ValueError, match="unknown MAEConfig fields"):
        MAEConfig.from_dict({"depthh": 3})


def test_from_cavmae_matches_the_audio_branch():
    cav = get_config("tiny", audio_length=96)
    cfg = MAEConfig.from_cavmae(cav)
    assert (cfg.embed_dim, cfg.depth, cfg.decoder_embed_dim, cfg.audio_length) == (192, 6, 128, 96)
    m = MAE(cfg.replace(depth=1, decoder_depth=1))
    assert isinstance(m.blocks[0], Block)  # the same block class as CAV-MAE
    assert not m.blocks[0].modality_norms


def test_bad_input_raises_with_a_hint():
    m = _model()
    with pytest.raises(ValueError, match="frequency-major"):
        m(torch.randn(2, 128, 96))
    with pytest.raises(ValueError, match="pad_or_crop"):
        m(torch.randn(2, 100, 128))


def test_loss_counts_only_masked_patches():
    m = _model()
    x = _audio()
    out = m(x, 0.75, generator=torch.Generator().manual_seed(0))
    visible = (out.mask == 0).unsqueeze(-1)  # [B, L, 1]
    changed_vis = torch.where(visible, out.pred + 5.0, out.pred)
    changed_msk = torch.where(visible, out.pred, out.pred + 5.0)
    assert torch.allclose(m.forward_loss(x, changed_vis, out.mask), out.loss)
    assert not torch.allclose(m.forward_loss(x, changed_msk, out.mask), out.loss)
    # and the gradient w.r.t. the predictions is exactly zero on visible patches
    pred = out.pred.detach().requires_grad_()
    m.forward_loss(x, pred, out.mask).backward()
    assert pred.grad[visible.expand_as(pred)].abs().max() == 0
    assert pred.grad[~visible.expand_as(pred)].abs().max() > 0


def test_norm_pix_loss_value():
    m = _model()
    x = _audio()
    out = m(x, 0.75, generator=torch.Generator().manual_seed(0))
    target = normalize_patches(m.patchify(x))
    per_patch = ((out.pred - target) ** 2).mean(-1)  # [B, L]
    assert torch.allclose(out.loss, per_patch[out.mask.bool()].mean(), atol=1e-6)
    # predicting 0 (= each patch's own mean in norm-pix units) scores (P - 1) / P with the unbiased variance
    zero = m.forward_loss(x, torch.zeros_like(out.pred), out.mask)
    assert abs(zero.item() - 255 / 256) < 1e-4
    raw = _model(norm_pix_loss=False)
    out_raw = raw(x, 0.75, generator=torch.Generator().manual_seed(0))
    per_patch = ((out_raw.pred - raw.patchify(x)) ** 2).mean(-1)
    assert torch.allclose(out_raw.loss, per_patch[out_raw.mask.bool()].mean(), atol=1e-6)


def test_determinism_with_a_generator():
    m = _model()
    x = _audio()
    a = m(x, 0.75, generator=torch.Generator().manual_seed(7))
    b = m(x, 0.75, generator=torch.Generator().manual_seed(7))
    c = m(x, 0.75, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.mask, b.mask) and torch.equal(a.loss, b.loss) and torch.equal(a.pred, b.pred)
    assert not torch.equal(a.mask, c.mask)
    assert torch.equal(_model(seed=3).decoder_pred.weight, _model(seed=3).decoder_pred.weight)


def test_explicit_noise_decides_the_mask():
    m = _model()
    noise = torch.arange(48, dtype=torch.float32).repeat(2, 1)  # lowest noise = first 12 tokens visible
    out = m(_audio(2), 0.75, noise=noise)
    assert out.mask[:, :12].sum() == 0 and out.mask[:, 12:].min() == 1
    assert out.ids_keep[0].tolist() == list(range(12))


def test_structured_time_masking_masks_whole_columns():
    m = _model(mask_mode="time")
    out = m(_audio(2), 0.75, generator=torch.Generator().manual_seed(0))
    grid = out.mask.view(2, 8, 6)  # [B, rows (freq), cols (time)]
    full_columns = (grid.sum(1) == 8).sum(1)  # per sample
    assert full_columns.tolist() == [int(6 * 0.75)] * 2


def test_add_mask_tokens_restores_positions():
    B, L, n, D = 2, 10, 4, 3
    ids_shuffle = torch.stack([torch.randperm(L, generator=torch.Generator().manual_seed(i))
                               for i in range(B)])  # [B, L]
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    full = torch.randn(B, L, D)
    vis = torch.gather(full, 1, ids_shuffle[:, :n, None].expand(-1, -1, D))  # [B, n, D]
    tok = torch.full((1, 1, D), -9.0)
    out = add_mask_tokens(vis, tok, ids_restore)
    kept = torch.zeros(B, L, dtype=torch.bool).scatter_(1, ids_shuffle[:, :n], True)
    assert torch.equal(out[kept], full[kept])
    assert (out[~kept] == -9.0).all()


def test_every_trainable_parameter_gets_a_gradient():
    m = _model()
    m(_audio(), 0.75, generator=torch.Generator().manual_seed(0)).loss.backward()
    missing = [n for n, p in m.named_parameters()
               if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not missing
    frozen = sorted(n for n, p in m.named_parameters() if not p.requires_grad)
    assert frozen == ["decoder_pos_embed", "pos_embed"]  # fixed sin-cos tables (tr_pos=False)


def _stripes(B: int) -> torch.Tensor:
    """Spectrogram-like batch [B, 96, 128]: harmonic stripes whose spacing differs per clip (predictable)."""
    f = torch.arange(128, dtype=torch.float32)
    t = torch.arange(96, dtype=torch.float32)[:, None]
    spacing = torch.linspace(0.2, 0.6, B)[:, None, None]
    return torch.sin(f * spacing) * (1 + 0.5 * torch.sin(t / 10))  # [B, T, F]


def test_training_steps_reduce_the_loss_on_a_fixed_batch():
    m = _model()
    x = _stripes(4)
    noise = torch.rand(4, 48, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(m.parameters(), lr=5e-3)
    losses = []
    for _ in range(12):
        loss = m(x, 0.75, noise=noise).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]  # measured: 1.128 -> 0.927


def test_reconstruct_pictures():
    m = _model()
    x = _audio(2)
    out = m(x, 0.75, generator=torch.Generator().manual_seed(0))
    r = m.reconstruct(x, out.pred, out.mask)
    assert set(r) == {"masked", "recon", "paste"} and all(v.shape == x.shape for v in r.values())
    vis = (m.patchify(r["masked"]).isnan().all(-1) == 0)  # [B, L] visible patches
    assert torch.equal(vis, out.mask == 0)
    assert torch.equal(m.patchify(r["paste"])[vis], m.patchify(x)[vis])
    # a perfect norm-pix prediction un-normalises back to the input
    target = m.patchify(x)
    assert torch.allclose(unnormalize_patches(normalize_patches(target), target), target, atol=1e-4)
