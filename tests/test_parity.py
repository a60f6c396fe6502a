"""Numerical parity with the official CAV-MAE (golden tensors shipped in tests/data/parity/cavmae_micro, see its
README: the official models' outputs at a small width, with the reference's structure and a non-square audio grid).

The official weights are loaded through ``avlib.convert.load_cavmae``; every tensor of ``io.pt`` that has an
avlib counterpart is recomputed (intermediates through forward hooks) and must match within 1e-5 (max abs
diff). The set is part of the repository: if it is missing, these tests fail.
"""

from pathlib import Path

import pytest
import torch

from avlib.convert import from_cavmae, load_cavmae
from avlib.losses import normalize_patches
from avlib.models import FT_MODES
from avlib.patching import patchify_audio, patchify_image
from avlib.pos_embed import get_2d_sincos_pos_embed

PARITY = Path(__file__).parent / "data" / "parity" / "cavmae_micro"
HEADS = dict(num_heads=2)  # the micro set's heads (not inferable from the weights)
TOL = 1e-5
EXACT = {"mask_a", "mask_v", "ids_restore_a", "ids_restore_v", "ids_keep_a", "ids_keep_v", "c_acc"}


def _load(name):
    path = PARITY / name
    if not path.is_file():
        pytest.fail(f"parity golden set missing: {path} (it ships with the repository; restore tests/data/parity)")
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def io():
    return _load("io.pt")


def _check(got: dict, io: dict) -> None:
    """Compare every tensor of ``got`` with io.pt; report all max-abs diffs in one failure message."""
    rows, bad = [], []
    for k, v in got.items():
        ref = io[k]
        assert tuple(v.shape) == tuple(ref.shape), f"{k}: {tuple(v.shape)} != reference {tuple(ref.shape)}"
        diff = (v.detach().double() - ref.double()).abs().max().item() if v.numel() else 0.0
        limit = 0.0 if k in EXACT else TOL
        rows.append(f"  {k:36s} max abs diff {diff:.3e}")
        if not diff <= limit:
            bad.append(k)
    assert not bad, f"parity broken for {bad} (tolerance {TOL}):\n" + "\n".join(rows)


def _hooks(model, store):
    """Capture the reference's intermediates with forward hooks (names as in io.pt)."""
    hs = [model.patch_embed_a.register_forward_hook(lambda m, i, o: store.setdefault("pre_patch_embed_a", o)),
          model.patch_embed_v.register_forward_hook(lambda m, i, o: store.setdefault("pre_patch_embed_v", o)),
          model.blocks_a[0].register_forward_pre_hook(lambda m, i: store.setdefault("pre_blocks_a_in", i[0])),
          model.blocks_v[0].register_forward_pre_hook(lambda m, i: store.setdefault("pre_blocks_v_in", i[0])),
          model.blocks_a[-1].register_forward_hook(lambda m, i, o: store.setdefault("pre_blocks_a_out", o)),
          model.blocks_v[-1].register_forward_hook(lambda m, i, o: store.setdefault("pre_blocks_v_out", o))]
    suffix = {None: "joint", "a": "a", "v": "v"}

    def shared_hook(m, args, out):
        modality = args[1] if len(args) > 1 else None
        store.setdefault(f"pre_blocks_u_out_{suffix[modality]}", out)

    hs.append(model.blocks_u[-1].register_forward_hook(shared_hook))
    if hasattr(model, "decoder_embed"):
        hs += [model.decoder_embed.register_forward_hook(
                   lambda m, i, o: store.setdefault("pre_decoder_embed_out", o)),
               model.decoder_blocks[0].register_forward_pre_hook(
                   lambda m, i: store.setdefault("pre_decoder_blocks_in", i[0])),
               model.decoder_norm.register_forward_hook(
                   lambda m, i, o: store.setdefault("pre_decoder_norm_out", o))]
    return hs


@pytest.fixture(scope="module")
def pretrain():
    return load_cavmae(_load("pretrain_state_dict.pt"), **HEADS, decoder_num_heads=2)


@pytest.fixture(scope="module")
def finetune():
    return load_cavmae(_load("finetune_state_dict.pt"), **HEADS)


def test_config_inferred_from_the_official_weights(pretrain, finetune):
    cfg = pretrain.cfg
    assert (cfg.audio_length, cfg.img_size, cfg.embed_dim, cfg.modality_specific_depth, cfg.shared_depth) == (
        256, 64, 32, 11, 1)
    assert cfg.audio_grid == (8, 16) and (cfg.decoder_embed_dim, cfg.decoder_depth) == (16, 2)
    assert not cfg.tr_pos and finetune.cfg.tr_pos and finetune.num_classes == 10


def test_fixed_sincos_tables_equal_the_reference():
    sd = _load("pretrain_state_dict.pt")
    for key, (h, w, d) in {"pos_embed_a": (8, 16, 32), "pos_embed_v": (4, 4, 32),
                           "decoder_pos_embed_a": (8, 16, 16), "decoder_pos_embed_v": (4, 4, 16)}.items():
        assert (get_2d_sincos_pos_embed(d, h, w)[None] - sd[key]).abs().max().item() <= 1e-7, key


def test_targets(io):
    got = {"target_a": patchify_audio(io["audio"]), "target_v": patchify_image(io["video"])}
    got["target_a_norm"] = normalize_patches(got["target_a"])
    got["target_v_norm"] = normalize_patches(got["target_v"])
    _check(got, io)


def test_pretraining_forward(pretrain, io):
    store = {}
    hooks = _hooks(pretrain, store)
    try:
        with torch.no_grad():
            out = pretrain(io["audio"], io["video"], mask_ratio_a=0.75, mask_ratio_v=0.75,
                           noise_a=io["noise_a"], noise_v=io["noise_v"])
    finally:
        for h in hooks:
            h.remove()
    names = ("mask_a", "mask_v", "ids_restore_a", "ids_restore_v", "ids_keep_a", "ids_keep_v", "latent",
             "latent_c_a", "latent_c_v", "pred_a", "pred_v", "loss", "loss_mae", "loss_mae_a", "loss_mae_v",
             "loss_c", "loss_c_unweighted", "c_acc", "contrast_logits")
    got = {k: getattr(out, k) for k in names}
    got.update(store)
    got["noise_a"], got["noise_v"] = io["noise_a"], io["noise_v"]
    wrong = -torch.diag(out.contrast_logits.log_softmax(dim=1)).mean()  # the direction NOT used
    got["loss_c_unweighted_wrong_direction"] = wrong
    assert len(store) == 12, sorted(store)
    _check(got, io)
    assert abs(out.loss_c_unweighted - wrong) > 0.1  # 0.175 on this set: the check can tell the directions apart


def test_forward_feat(pretrain, io):
    with torch.no_grad():
        feat_a, feat_v = pretrain.forward_feat(io["audio"], io["video"])
    _check({"pre_feat_a": feat_a, "pre_feat_v": feat_v}, io)


def test_finetune_all_modes(finetune, io):
    audio, video = io["audio"], io["video"]
    got = {}
    with torch.no_grad():
        for mode in FT_MODES:
            pooled = finetune.forward_head(finetune.forward_features(audio, video, mode), pre_logits=True)
            got[f"ft_pooled_{mode}"] = pooled
            got[f"ft_logits_{mode}"] = finetune(audio, video, mode)
            assert torch.equal(finetune.mlp_head(pooled), got[f"ft_logits_{mode}"])
        got["ft_feat_a"], got["ft_feat_v"] = finetune.forward_feat(audio, video)
        got["ft_feat_a_only"] = finetune.forward_feat(audio, None)[0]
    _check(got, io)


def test_module_prefix_and_unused_norms_give_the_same_model(io):
    sd = _load("finetune_state_dict.pt")
    prefixed = {"module." + k: v for k, v in sd.items()}
    a = load_cavmae(prefixed, **HEADS)
    b = load_cavmae(sd, **HEADS, keep_unused_norms=True)  # the reference's full layout
    assert len(from_cavmae(sd)) == len(sd) - 2 * 11 * 8  # never-used norms of blocks_a/blocks_v dropped
    with torch.no_grad():
        ref = a(io["audio"], io["video"])
        assert torch.equal(ref, b(io["audio"], io["video"]))
    assert (ref - io["ft_logits_multimodal"]).abs().max() <= TOL


def test_explicit_attention_path(io):
    model = load_cavmae(_load("finetune_state_dict.pt"), **HEADS, fused_attn=False)
    with torch.no_grad():
        got = {f"ft_logits_{m}": model(io["audio"], io["video"], m) for m in FT_MODES}
    _check(got, io)


def test_the_golden_set_is_the_one_described(io):
    """The shipped files are the published ones (SHA256SUMS) and hold the README's scalars."""
    import hashlib

    for line in (PARITY / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((PARITY / name).read_bytes()).hexdigest() == digest, name
    assert float(io["loss"]) == pytest.approx(2.1684711, abs=1e-6) and float(io["c_acc"]) == 0.5
