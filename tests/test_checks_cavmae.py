"""Self-checks of notebook 09 (``avlib.checks.cavmae``): right answers pass, typical mistakes get their hint."""

import pytest
import torch

import avlib.checks.cavmae  # noqa: F401 - import (timm, models) at collection, not in the first test
from avlib import checks
from avlib.masking import random_masking


def _streams(model, a, v, modality_a="a", modality_v="v", norm_a=None, norm_v=None, joint_order="av"):
    def shared(x, modality, final):
        for blk in model.blocks_u:
            x = blk(x, modality)
        return final(x)

    joint_in = torch.cat([a, v] if joint_order == "av" else [v, a], dim=1)
    return (shared(joint_in, None, model.norm), shared(a, modality_a, norm_a or model.norm_a),
            shared(v, modality_v, norm_v or model.norm_v))


def _visible(model, audio, video, noise_a, noise_v, ratio):
    a = random_masking(model.embed_audio(audio), ratio, noise=noise_a).x  # [B, La', D]
    v = random_masking(model.embed_video(video), ratio, noise=noise_v).x  # [B, Lv', D]
    return model.encode_audio(a), model.encode_video(v)


def good(model, audio, video, noise_a, noise_v, mask_ratio=0.75):
    return _streams(model, *_visible(model, audio, video, noise_a, noise_v, mask_ratio))


def via_forward_shared(model, audio, video, noise_a, noise_v, mask_ratio=0.75):
    a, v = _visible(model, audio, video, noise_a, noise_v, mask_ratio)
    return {"latent": model.forward_shared(torch.cat([a, v], 1)), "latent_c_a": model.forward_shared(a, "a"),
            "latent_c_v": model.forward_shared(v, "v")}


def joint_norms_for_streams(model, audio, video, noise_a, noise_v, mask_ratio=0.75):
    a, v = _visible(model, audio, video, noise_a, noise_v, mask_ratio)
    return _streams(model, a, v, None, None, model.norm, model.norm)


def block_norms_only(model, audio, video, noise_a, noise_v, mask_ratio=0.75):
    a, v = _visible(model, audio, video, noise_a, noise_v, mask_ratio)
    return _streams(model, a, v, None, None)  # right final norms, joint LayerNorm set inside the block


def video_first(model, audio, video, noise_a, noise_v, mask_ratio=0.75):
    a, v = _visible(model, audio, video, noise_a, noise_v, mask_ratio)
    return _streams(model, a, v, joint_order="va")


def slice_of_joint(model, audio, video, noise_a, noise_v, mask_ratio=0.75):
    latent, _, c_v = good(model, audio, video, noise_a, noise_v, mask_ratio)
    n_a = int(model.cfg.num_patches_a * (1 - mask_ratio))
    return latent, latent[:, :n_a], c_v


def mask_late(model, audio, video, noise_a, noise_v, mask_ratio=0.75):
    a = random_masking(model.encode_audio(model.embed_audio(audio)), mask_ratio, noise=noise_a).x
    v = random_masking(model.encode_video(model.embed_video(video)), mask_ratio, noise=noise_v).x
    return _streams(model, a, v)


def no_masking(model, audio, video, noise_a, noise_v, mask_ratio=0.75):
    return _streams(model, model.encode_audio(model.embed_audio(audio)), model.encode_video(model.embed_video(video)))


def own_noise(model, audio, video, noise_a, noise_v, mask_ratio=0.75):
    g = torch.Generator().manual_seed(123)
    return good(model, audio, video, torch.rand(noise_a.shape, generator=g), torch.rand(noise_v.shape, generator=g),
                mask_ratio)


@pytest.mark.parametrize("fn, needle", [
    (joint_norms_for_streams, "own LayerNorm set"),
    (block_norms_only, "inside the shared block use the 'a' LayerNorm set"),
    (video_first, "audio tokens first"),
    (slice_of_joint, "not a slice of the joint pass"),
    (mask_late, "mask right after the embeddings"),
    (no_masking, "no token was masked"),
    (own_noise, "given masking noise"),
])
def test_wrong_versions_get_their_hint(fn, needle, run_check):
    run_check.fails(checks.cavmae.joint_encoder, fn, hint=needle)


@pytest.mark.parametrize("fn", [good, via_forward_shared])
def test_right_versions_pass(fn, run_check):
    run_check.passes(checks.cavmae.joint_encoder, fn)


def test_skipped_and_crashing(capsys, run_check):
    run_check.skips(checks.cavmae.joint_encoder)
    assert checks.cavmae.joint_encoder(lambda *args: args[0](args[1])) is False
    assert capsys.readouterr().out.startswith("❌")


def test_check_leaves_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    checks.cavmae.example_model()
    assert torch.equal(torch.rand(3), expected)


def test_example_model_norm_sets_differ():
    blk = checks.cavmae.example_model().blocks_u[0]
    assert not torch.allclose(blk.norm1.weight, blk.norm1_a.weight)
    assert not torch.allclose(blk.norm1_a.weight, blk.norm1_v.weight)
