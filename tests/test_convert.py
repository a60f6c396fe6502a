"""avlib.convert: strict official-key mapping, export, pretraining -> fine-tuning, ImageNet MAE -> CAV-MAE.

All state dicts are built in the test (no download)."""

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from avlib.convert import (
    ConversionError,
    cavmae_to_finetune,
    from_cavmae,
    from_mae_vit,
    infer_cavmae_config,
    load_cavmae,
    to_cavmae,
    unused_norm_keys,
)
from avlib.models import CAVMAE, CAVMAEFT, create_model

MICRO = dict(audio_length=64, img_size=32, embed_dim=32, num_heads=2, modality_specific_depth=2,
             decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)


def _micro(**kw):
    torch.manual_seed(0)
    model = create_model("tiny", **{**MICRO, **kw}).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def _inputs(T=64, S=32):
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, T, 128, generator=g), torch.randn(2, 3, S, S, generator=g)


def _official(model) -> dict:
    """An official-layout state dict (with DataParallel's prefix), as the released checkpoints."""
    return to_cavmae(model, prefix="module.")


def test_export_has_the_official_layout_and_round_trips():
    model = _micro()
    sd = _official(model)
    assert all(k.startswith("module.") for k in sd)
    assert "module.blocks_a.0.norm1_a.weight" in sd and "module.decoder_blocks.0.norm2_v.bias" in sd
    n_blocks = 2 * 2 + 1 + 1  # blocks_a, blocks_v, blocks_u, decoder_blocks
    assert len(sd) == 27 + n_blocks * 20  # as the reference: 527 = 27 + 25 * 20
    loaded = load_cavmae(sd, num_heads=2, decoder_num_heads=2)
    assert loaded.cfg == model.cfg
    audio, video = _inputs()
    with torch.no_grad():
        kw = lambda: dict(generator=torch.Generator().manual_seed(0))  # noqa: E731
        assert torch.equal(model(audio, video, **kw()).loss, loaded(audio, video, **kw()).loss)


def test_strict_errors_list_the_keys():
    sd = _official(_micro())
    missing = {k: v for k, v in sd.items() if k != "module.blocks_v.1.attn.qkv.bias"}
    with pytest.raises(ConversionError, match=r"missing keys \(1\): blocks_v.1.attn.qkv.bias"):
        from_cavmae(missing)
    with pytest.raises(ConversionError, match=r"unknown keys \(1\): blocks_a.0.attn.q_bias"):
        from_cavmae({**sd, "module.blocks_a.0.attn.q_bias": torch.zeros(3)})
    mixed = dict(sd)
    mixed["norm.weight"] = mixed.pop("module.norm.weight")
    with pytest.raises(ConversionError, match="only some keys"):
        from_cavmae(mixed)
    with pytest.raises(ConversionError, match="modality_a"):
        from_cavmae({"weight": torch.zeros(1)})
    with pytest.raises(ConversionError, match="num_heads"):
        infer_cavmae_config(sd)  # width 32 is not the reference's 768: heads must be given


def test_unused_norms_are_dropped_or_kept():
    sd = from_cavmae(_official(_micro()), keep_unused_norms=True)
    dropped = unused_norm_keys(sd)
    assert len(dropped) == (2 + 2 + 1) * 8 and not any(k.startswith("blocks_u") for k in dropped)
    assert set(from_cavmae(sd)) == set(sd) - set(dropped)
    full = create_model("tiny", **MICRO, unused_norms=True)
    full.load_state_dict(sd, strict=True)


def test_shorter_clip_trims_the_positional_table():
    ft = _micro(num_classes=3, tr_pos=True)
    sd = _official(ft)
    short = load_cavmae(sd, ft.cfg.replace(audio_length=32), num_heads=2)  # 4 -> 2 time columns
    assert short.cfg.audio_grid == (8, 2)
    full = ft.pos_embed_a.detach().reshape(8, 4, -1)
    assert torch.equal(short.pos_embed_a.detach().reshape(8, 2, -1), full[:, :2])
    assert short(torch.randn(2, 32, 128), torch.randn(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(ConversionError, match="reset_classifier"):
        load_cavmae(sd, num_heads=2, num_classes=5)


def test_pretrained_to_finetune():
    pre = _micro()
    ft = cavmae_to_finetune(pre, num_classes=6)
    assert isinstance(ft, CAVMAEFT) and ft.cfg.tr_pos and ft.pos_embed_a.requires_grad
    assert not hasattr(ft, "decoder_embed") and ft.mlp_head[1].out_features == 6
    audio, video = _inputs()
    with torch.no_grad():
        for x, y in zip(pre.forward_feat(audio, video), ft.forward_feat(audio, video), strict=True):
            assert torch.equal(x, y)
    with pytest.raises(TypeError):
        cavmae_to_finetune(ft, 3)


def _fake_mae(cfg, with_decoder=True) -> dict:
    """An ImageNet-MAE-shaped checkpoint: a timm ViT (cls token) + MAE decoder keys, random values."""
    torch.manual_seed(1)
    vit = VisionTransformer(img_size=cfg.img_size, patch_size=16, embed_dim=cfg.embed_dim, depth=cfg.depth,
                            num_heads=cfg.num_heads, num_classes=0)
    sd = {k: v + 0.01 * torch.randn_like(v) for k, v in vit.state_dict().items()}
    if with_decoder:
        Dd, n = cfg.decoder_embed_dim, cfg.num_patches_v
        sd.update({"mask_token": torch.randn(1, 1, Dd), "decoder_pos_embed": torch.randn(1, n + 1, Dd),
                   "decoder_embed.weight": torch.randn(Dd, cfg.embed_dim),
                   "decoder_embed.bias": torch.randn(Dd),
                   "decoder_norm.weight": torch.randn(Dd), "decoder_norm.bias": torch.randn(Dd),
                   "decoder_pred.weight": torch.randn(768, Dd), "decoder_pred.bias": torch.randn(768)})
        dec = VisionTransformer(img_size=cfg.img_size, embed_dim=Dd, depth=cfg.decoder_depth,
                                num_heads=cfg.decoder_num_heads).blocks.state_dict()
        sd.update({f"decoder_blocks.{k}": torch.randn_like(v) for k, v in dec.items()})
    return {"model": sd}  # MAE's release format


def test_mae_vit_initialisation_recipe():
    cfg = _micro().cfg
    mae = _fake_mae(cfg)
    sd = mae["model"]
    model = from_mae_vit(mae, cfg)
    n = cfg.modality_specific_depth
    assert isinstance(model, CAVMAE)
    for i in range(n):  # ViT blocks 0..n-1 -> both modality stacks
        assert torch.equal(model.blocks_a[i].attn.qkv.weight, sd[f"blocks.{i}.attn.qkv.weight"])
        assert torch.equal(model.blocks_v[i].mlp.fc2.bias, sd[f"blocks.{i}.mlp.fc2.bias"])
    shared = model.blocks_u[0]  # the last ViT block -> the shared block, norms copied into all three sets
    for norm in (shared.norm1, shared.norm1_a, shared.norm1_v):
        assert torch.equal(norm.weight, sd[f"blocks.{n}.norm1.weight"])
    for norm in (model.norm, model.norm_a, model.norm_v):
        assert torch.equal(norm.bias, sd["norm.bias"])
    w = sd["patch_embed.proj.weight"]
    assert torch.allclose(model.patch_embed_a.proj.weight, w.sum(1, keepdim=True))  # RGB kernel summed
    assert torch.equal(model.patch_embed_v.proj.weight, w)
    assert torch.equal(model.pos_embed_v, sd["pos_embed"][:, 1:])  # cls row dropped
    assert torch.equal(model.decoder_pred_a.weight, sd["decoder_pred.weight"][:256])
    assert torch.equal(model.decoder_blocks[0].attn.proj.weight, sd["decoder_blocks.0.attn.proj.weight"])
    assert torch.equal(model.mask_token, sd["mask_token"])
    out = model(*_inputs(), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss)


def test_mae_vit_errors_and_encoder_only_weights():
    cfg = _micro().cfg
    encoder_only = _fake_mae(cfg, with_decoder=False)
    model = from_mae_vit(encoder_only, cfg)  # decoder keeps its fresh init
    assert torch.isfinite(model(*_inputs(), generator=torch.Generator().manual_seed(0)).loss)
    bad = dict(encoder_only["model"], **{"blocks.0.attn.q_norm.weight": torch.ones(16)})
    with pytest.raises(ConversionError, match="no place in CAV-MAE"):
        from_mae_vit(bad, cfg)
    with pytest.raises(ConversionError, match="blocks but the config needs"):
        from_mae_vit(encoder_only, cfg.replace(modality_specific_depth=3))


def test_to_cavmae_refuses_a_conv_stem():
    from avlib.convert import ConversionError, to_cavmae
    from avlib.models import create_model

    with pytest.raises(ConversionError, match="stem='conv'"):
        to_cavmae(create_model("tiny", audio_length=96, num_mel_bins=64, img_size=64, embed_dim=32, num_heads=2,
                               decoder_embed_dim=32, decoder_num_heads=2, stem="conv"))
