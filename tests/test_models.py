"""avlib.models: named configs, parameter counts, outputs, gradients, fine-tuning modes, multi-frame,
checkpoints."""

import json

import pytest
import torch

from avlib.models import (
    CAVMAE,
    CAVMAEFT,
    FT_MODES,
    CAVMAEConfig,
    CAVMAEOutput,
    count_parameters,
    create_model,
    from_pretrained,
    get_config,
    load_config,
    model_names,
    save_pretrained,
)

# a micro model: audio 8 freq rows x 2 time columns = 16 tokens, video 2 x 2 = 4 tokens
MICRO = dict(audio_length=32, img_size=32, embed_dim=32, num_heads=2, modality_specific_depth=2,
             decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)

# the reference's never-used LayerNorms: norm{1,2}_{a,v} of every non-shared block (encoder and decoder)
UNUSED = ("blocks_a.", "blocks_v.", "decoder_blocks.")


def _inputs(B=3, seed=0, T=32, F=128, S=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, F, generator=g), torch.randn(B, 3, S, S, generator=g)


def _micro(**kw):
    torch.manual_seed(0)
    return create_model("tiny", **{**MICRO, **kw})


def test_named_configs():
    assert model_names() == ["tiny", "small", "base"]
    base = get_config("base")
    assert (base.embed_dim, base.num_heads) == (768, 12)
    assert (base.modality_specific_depth, base.shared_depth) == (11, 1)
    assert (base.decoder_embed_dim, base.decoder_depth, base.decoder_num_heads) == (512, 8, 16)
    assert (base.audio_length, base.num_mel_bins, base.img_size, base.ln_eps) == (1024, 128, 224, 1e-5)
    assert base.audio_grid == (8, 64) and base.num_patches_a == 512 and base.num_patches_v == 196
    assert get_config("tiny", audio_length=400, img_size=96).audio_grid == (8, 25)
    with pytest.raises(ValueError, match="unknown model"):
        create_model("huge")
    with pytest.raises(ValueError, match="unknown CAVMAEConfig fields"):
        get_config("tiny", depth=3)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        CAVMAEConfig(audio_length=1000)
    with pytest.raises(ValueError, match="num_heads"):
        CAVMAEConfig(embed_dim=100, num_heads=3)
    assert CAVMAEConfig.from_dict(base.to_dict()) == base


def test_base_parameter_counts_equal_the_reference():
    with torch.device("meta"):  # no memory, no init cost
        ref = create_model("base", unused_norms=True)
        ref_ft = create_model("base", num_classes=527, unused_norms=True)
        lean = create_model("base")
        lean_ft = create_model("base", num_classes=527)
    assert count_parameters(ref) == (191_036_160, 190_129_920)
    assert count_parameters(ref_ft) == (164_907_023, 164_907_023)
    # avlib's default drops the never-used LayerNorms: 167,936 values (CAVMAE), 135,168 (CAVMAEFT)
    assert count_parameters(lean) == (191_036_160 - 167_936, 190_129_920 - 167_936)
    assert count_parameters(lean_ft) == (164_907_023 - 135_168,) * 2
    unused = sum(p.numel() for n, p in ref.named_parameters() if n.startswith(UNUSED) and "norm" in n
                 and n.split(".")[2] in ("norm1_a", "norm1_v", "norm2_a", "norm2_v"))
    assert unused == 167_936


def test_forward_outputs():
    model = _micro().train()
    audio, video = _inputs()
    out = model(audio, video, generator=torch.Generator().manual_seed(1))
    assert isinstance(out, CAVMAEOutput)
    B, La, Lv, D = 3, 16, 4, 32
    assert out.pred_a.shape == (B, La, 256) and out.pred_v.shape == (B, Lv, 768)
    assert out.mask_a.shape == (B, La) and out.mask_v.shape == (B, Lv)
    assert out.latent.shape == (B, 4 + 1, D) and out.latent_c_a.shape == (B, 4, D)
    assert out.latent_c_v.shape == (B, 1, D) and out.contrast_logits.shape == (B, B)
    assert torch.equal(out.loss, out.loss_mae + out.loss_c)
    assert torch.equal(out.loss_mae, out.loss_mae_a + out.loss_mae_v)
    assert torch.isclose(out.loss_c, 0.01 * out.loss_c_unweighted)
    assert 0.0 <= out.c_acc.item() <= 1.0
    assert set(out.losses()) == {"loss", "loss_mae", "loss_mae_a", "loss_mae_v", "loss_c", "c_acc"}
    feat_a, feat_v = model.forward_feat(audio, video)
    assert feat_a.shape == (B, La, D) and feat_v.shape == (B, Lv, D)
    assert model.forward_feat(audio, None)[1] is None


def test_determinism_noise_and_mask_modes():
    model = _micro().eval()
    audio, video = _inputs()
    o1 = model(audio, video, generator=torch.Generator().manual_seed(5))
    o2 = model(audio, video, generator=torch.Generator().manual_seed(5))
    assert torch.equal(o1.loss, o2.loss) and torch.equal(o1.mask_a, o2.mask_a)
    g = torch.Generator().manual_seed(5)
    noise_a = torch.rand(3, 16, generator=g)  # audio noise is drawn first,
    noise_v = torch.rand(3, 4, generator=g)  # then video
    o3 = model(audio, video, noise_a=noise_a, noise_v=noise_v)
    assert torch.equal(o3.loss, o1.loss)
    for mode in ("time", "freq", "tf"):
        out = model(audio, video, mask_mode=mode, generator=torch.Generator().manual_seed(0))
        assert out.mask_a.sum(1).eq(12).all()
    with pytest.raises(ValueError, match="unknown mask_mode"):
        model(audio, video, mask_mode="random")
    with pytest.raises(ValueError, match="without masked tokens"):
        model(audio, video, mask_ratio_v=0.0)


def test_every_trainable_parameter_gets_a_gradient():
    for kw in ({}, {"learnable_temperature": True}, {"shared_depth": 2}):
        model = _micro(**kw).train()
        audio, video = _inputs()
        model(audio, video, generator=torch.Generator().manual_seed(0)).loss.backward()
        no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert no_grad == [], kw
    # with the reference layout, exactly the never-used LayerNorms get none
    model = _micro(unused_norms=True).train()
    model(*_inputs(), generator=torch.Generator().manual_seed(0)).loss.backward()
    no_grad = {n for n, p in model.named_parameters() if p.requires_grad and p.grad is None}
    expected = {n for n, _ in model.named_parameters()
                if n.startswith(UNUSED) and n.split(".")[2] in ("norm1_a", "norm1_v", "norm2_a", "norm2_v")}
    assert no_grad == expected and len(expected) == (2 + 2 + 1) * 8
    fixed = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert fixed == {"pos_embed_a", "pos_embed_v", "decoder_pos_embed_a", "decoder_pos_embed_v"}


def test_finetune_modes_cover_every_parameter():
    ft = _micro(num_classes=5).train()
    assert isinstance(ft, CAVMAEFT) and ft.pos_embed_a.requires_grad  # tr_pos=True by default
    audio, video = _inputs()
    for mode in ("multimodal", "audioonly", "videoonly"):
        ft(audio, video, mode).sum().backward()
    assert [n for n, p in ft.named_parameters() if p.grad is None] == []
    with pytest.raises(ValueError, match="unknown mode"):
        ft(audio, video, "both")
    with pytest.raises(ValueError, match="needs audio"):
        ft(None, video, "multimodal")


def test_finetune_outputs_and_missing_modality_modes():
    ft = _micro(num_classes=5).eval()
    with torch.no_grad():
        for p in ft.parameters():  # break the (1, 0) LayerNorm init so the norm sets differ
            p.add_(0.05 * torch.randn_like(p))
    audio, video = _inputs()
    with torch.no_grad():
        logits = {m: ft(audio if "video" not in m else None, video if "audio" not in m else None, m)
                  for m in FT_MODES if m != "multimodal"}
        logits["multimodal"] = ft(audio, video)
        tokens = ft.forward_features(audio, None, "missingaudioonly")
        pooled = ft.forward_head(tokens, pre_logits=True)
        assert torch.equal(ft.forward_head(tokens), logits["missingaudioonly"])
    assert all(v.shape == (3, 5) for v in logits.values())
    assert tokens.shape == (3, 16, 32) and pooled.shape == (3, 32)
    assert (logits["missingaudioonly"] - logits["audioonly"]).abs().max() > 1e-4
    feat_a, feat_v = ft.forward_feat(audio, video)
    assert feat_a.shape == (3, 16, 32) and ft.forward_feat(audio, None)[1] is None
    assert torch.equal(feat_a, ft.forward_features(audio, None, "audioonly"))  # one contract: the audio stream
    ft.reset_classifier(7)
    assert ft(audio, video).shape == (3, 7) and ft.num_classes == 7


def test_multiframe_equals_separate_passes():
    ft = _micro(num_classes=4).eval()
    with torch.no_grad():
        for p in ft.parameters():
            p.add_(0.05 * torch.randn_like(p))
    audio, _ = _inputs(B=2)
    frames = torch.randn(2, 5, 3, 32, 32, generator=torch.Generator().manual_seed(2))  # [B, V, 3, H, W]
    with torch.no_grad():
        for mode in FT_MODES:
            naive = torch.stack([ft(audio, frames[:, i], mode) for i in range(5)], dim=1)  # [B, V, K]
            shared = ft.forward_multiframe(audio, frames, mode)
            assert shared.shape == (2, 5, 4)
            assert (shared - naive).abs().max() < 1e-5, mode
        probs = ft.forward_multiframe(audio, frames, reduce="softmax")
        assert torch.allclose(probs, naive_probs := torch.stack(
            [ft(audio, frames[:, i]).softmax(-1) for i in range(5)]).mean(0), atol=1e-6), naive_probs
        assert ft.forward_multiframe(audio, frames, reduce="sigmoid").shape == (2, 4)
        assert ft.forward_multiframe(audio, None, "audioonly").shape == (2, 1, 4)
    with pytest.raises(ValueError, match=r"\[B, V, 3, H, W\]"):
        ft.forward_multiframe(audio, frames[:, 0])


def test_bad_inputs_name_the_fix():
    model = _micro()
    audio, video = _inputs()
    with pytest.raises(ValueError, match="transpose"):
        model(audio.transpose(1, 2), video)
    with pytest.raises(ValueError, match="Pad or crop"):
        model(audio[:, :16], video)
    with pytest.raises(ValueError, match="video must be frames"):
        model(audio, video[:, :, :16])


def test_loss_weights_and_contrast_options():
    audio, video = _inputs()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    out = _micro(mae_loss_weight=0.0)(audio, video, generator=g())
    assert out.pred_a is None and out.loss_mae.item() == 0.0 and torch.equal(out.loss, out.loss_c)
    out = _micro(contrast_loss_weight=0.0)(audio, video, generator=g())
    assert out.loss_c.item() == 0.0 and torch.equal(out.loss, out.loss_mae)
    one = _micro()(audio, video, generator=g()).loss_c_unweighted
    two = _micro(bidirectional_contrast=True)(audio, video, generator=g()).loss_c_unweighted
    assert not torch.isclose(one, two)
    learn = _micro(learnable_temperature=True)
    assert torch.isclose(torch.as_tensor(learn.temperature), torch.tensor(0.05))
    assert torch.isclose(learn(audio, video, generator=g()).loss_c_unweighted, one, atol=1e-5)


def test_bf16_autocast_forward_backward():
    model = _micro().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*_inputs(), generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.blocks_a[0].attn.qkv.weight.grad is not None


def test_save_and_load_pretrained(tmp_path):
    audio, video = _inputs()
    for model in (_micro().eval(), _micro(num_classes=3).eval()):
        d = save_pretrained(model, tmp_path / type(model).__name__, extra={"labels": ["a", "b", "c"]})
        meta = json.loads((d / "config.json").read_text())
        assert meta["arch"] == type(model).__name__ and meta["config"]["embed_dim"] == 32
        rng = torch.get_rng_state()
        loaded = from_pretrained(d)
        assert torch.equal(torch.get_rng_state(), rng)  # loading draws nothing from the global RNG
        assert type(loaded) is type(model) and loaded.cfg == model.cfg and load_config(d)["extra"]["labels"][0] == "a"
        assert not hasattr(loaded, "extra") and not any(t.is_meta for t in loaded.state_dict().values())
        assert {n for n, p in loaded.named_parameters() if p.requires_grad} == \
            {n for n, p in model.named_parameters() if p.requires_grad}
        for k, v in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v), k
        if isinstance(model, CAVMAE):
            first = model(audio, video, generator=torch.Generator().manual_seed(0)).loss
            assert torch.equal(first, loaded(audio, video, generator=torch.Generator().manual_seed(0)).loss)
        else:
            assert torch.equal(model(audio, video), loaded(audio, video))
    with pytest.raises(FileNotFoundError, match="not an avlib checkpoint"):
        from_pretrained(tmp_path / "nothing")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward_matches_cpu():
    model = _micro().eval()
    audio, video = _inputs()
    cpu = model(audio, video, generator=torch.Generator().manual_seed(0))
    gpu = model.cuda()(audio.cuda(), video.cuda(), generator=torch.Generator().manual_seed(0))
    assert torch.equal(cpu.mask_a, gpu.mask_a.cpu())
    assert (cpu.loss - gpu.loss.cpu()).abs() < 1e-4


@pytest.mark.slow
def test_bench_case_smoke():
    from avlib.bench import _format, run_case

    cases = ("pretrain_fp32", "agg10_naive", "agg10_shared")
    rows = [run_case("tiny", case, iters=1, batch=1) for case in cases]
    assert all(len(r["s_per_sample"]) == 1 and r["peak_rss_mb"] > 0 for r in rows)
    assert "vs naive 10 passes" in _format(rows)


def test_pretraining_forward_runs_on_the_meta_device():
    """Shape-only runs (no storage) work: the fp32 contrastive block must not ask autocast for 'meta'."""
    with torch.device("meta"):
        model = create_model("tiny", audio_length=96, img_size=64)
        out = model(torch.empty(2, 96, 128), torch.empty(2, 3, 64, 64))
    assert out.loss.device.type == "meta" and out.pred_a.shape[:2] == (2, model.cfg.num_patches_a)


def test_features_contract_unpooled_differentiable_and_one_mode_table():
    """timm contract: forward_features gives unpooled tokens with gradients in every mode, forward_head pools and
    classifies; MODE_INPUTS says which inputs each mode needs, and the model refuses a missing one."""
    from avlib.models import MODE_INPUTS, mode_inputs

    ft = _micro(num_classes=5).train()
    audio, video = _inputs()
    n_tokens = {"audio": 16, "video": 4}
    assert tuple(MODE_INPUTS) == FT_MODES
    for mode, needs in MODE_INPUTS.items():
        x = ft.forward_features(audio if "audio" in needs else None, video if "video" in needs else None, mode)
        assert x.shape == (3, sum(n_tokens[k] for k in needs), 32) and x.requires_grad, mode
        assert torch.equal(ft.forward_head(x), ft(audio, video, mode))
        for k in needs:
            with pytest.raises(ValueError, match=f"needs {k}"):
                ft.forward_features(None if k == "audio" else audio, None if k == "video" else video, mode)
    with pytest.raises(ValueError, match="unknown mode"):
        mode_inputs("av")
    pre = _micro()
    x = pre.forward_features(audio, video)  # the pretraining model: the same contract (no head)
    assert x.shape == (3, 20, 32) and pre.forward_head(x).shape == (3, 32)


def test_models_declare_weight_decay_and_layer_groups():
    from timm.models import group_parameters

    for model in (_micro(), _micro(num_classes=5), _micro(learnable_temperature=True)):
        names = {n for n, _ in model.named_parameters()}
        assert model.no_weight_decay() <= names
        assert {"pos_embed_a", "modality_v"} <= model.no_weight_decay()
        ids = group_parameters(model, model.group_matcher(), reverse=True)
        assert set(ids) == names and ids["patch_embed_a.proj.weight"] == 0 and ids["blocks_u.0.attn.qkv.weight"] == 3
    assert "logit_scale" in _micro(learnable_temperature=True).no_weight_decay()


def test_contrastive_false_leaves_the_loss_to_the_caller():
    model = _micro().eval()
    audio, video = _inputs()
    full = model(audio, video, generator=torch.Generator().manual_seed(1))
    part = model(audio, video, generator=torch.Generator().manual_seed(1), contrastive=False)
    assert part.loss_c is None and part.c_acc is None and part.contrast_logits is None
    assert torch.equal(part.loss, full.loss_mae) and torch.equal(part.pooled_a, full.pooled_a)
    assert part.pooled_a.dtype == torch.float32 and part.pooled_v.shape == (3, 32)
    assert set(part.losses()) == {"loss", "loss_mae", "loss_mae_a", "loss_mae_v"}
