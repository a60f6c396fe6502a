"""avlib.influence: the video -> audio influence measures of the shared block, against explicit maths."""

import math

import pytest
import torch

from avlib.influence import CrossModalInfluence, cross_modal_influence
from avlib.models import create_model

# audio 64 mel bins x 32 frames = 4 x 2 = 8 tokens, video 32 px = 2 x 2 = 4 tokens; 2 heads of 16
MICRO = dict(audio_length=32, num_mel_bins=64, img_size=32, embed_dim=32, num_heads=2, modality_specific_depth=1,
             decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
PER_HEAD = ("weight_on_video", "output_share_video", "value_norm_audio", "value_norm_video",
            "attended_value_norm_video", "top_video_token", "head_update", "head_swap_change")


def _model(**kw):
    torch.manual_seed(0)
    return create_model("tiny", **{**MICRO, **kw}).eval()


def _inputs(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 32, 64, generator=g), torch.randn(n, 3, 32, 32, generator=g)


def _stream(model, audio, video):
    """The joint stream entering blocks_u[0], built as forward_encoder does (no masking)."""
    a = model.encode_audio(model.embed_audio(audio))  # [B, La, D]
    v = model.encode_video(model.embed_video(video))  # [B, Lv, D]
    return torch.cat([a, v], dim=1), a.shape[1]


def test_shapes_ranges_and_token_share():
    model = _model()
    r = cross_modal_influence(model, *_inputs(), batch_size=2)  # batches of 2, 2, 1
    assert isinstance(r, CrossModalInfluence)
    for name in PER_HEAD:
        vals = getattr(r, name)
        assert len(vals) == 2 and all(math.isfinite(x) for x in vals), name
    for name in ("weight_on_video", "output_share_video"):
        assert all(0 <= x <= 1 for x in getattr(r, name)), name
    assert all(0.25 - 1e-6 <= x <= 1 + 1e-6 for x in r.top_video_token)  # 4 video tokens: max >= 1/4 of the sum
    assert r.video_token_share == pytest.approx(4 / 12)
    f = r.factors
    assert f["branch"] * f["video_part"] * f["clip_specific"] == pytest.approx(r.swap_change, rel=1e-5)
    assert set(r.as_dict()) >= set(PER_HEAD)


def test_matches_explicit_maths_and_the_block():
    model = _model()
    audio, video = _inputs(n=3)
    r = cross_modal_influence(model, audio, video)
    blk = model.blocks_u[0]
    with torch.no_grad():
        x, La = _stream(model, audio, video)
        x2, _ = _stream(model, audio, video.roll(1, dims=0))
        w = torch.nn.functional.softmax  # explicit attention, one head at a time
        h = blk.norm1(x)  # [B, N, D]
        D, H = h.shape[-1], 2
        d = D // H
        q, k, v = blk.attn.qkv(h).split(D, dim=-1)  # each [B, N, D], heads contiguous
        Wo = blk.attn.proj.weight  # [D, D]
        share, weight = [], []
        for hd in range(H):
            cols = slice(hd * d, (hd + 1) * d)
            a = w(q[:, :La, cols] @ k[:, :, cols].transpose(1, 2) / math.sqrt(d), dim=-1)  # [B, La, N]
            f = v[:, :, cols] @ Wo[:, cols].T  # [B, N, D] value-output vectors
            out_a = (a[..., :La] @ f[:, :La]).norm(dim=-1)  # [B, La]
            out_v = (a[..., La:] @ f[:, La:]).norm(dim=-1)
            share.append((out_v / (out_a + out_v)).mean().item())
            weight.append(a[..., La:].sum(-1).mean().item())
        u = blk.attention(h)[:, :La]  # [B, La, D] the block's own attention branch
        u2 = blk.attention(blk.norm1(x2))[:, :La]
        xn = x[:, :La].norm(dim=-1)
    assert r.weight_on_video == pytest.approx(weight, abs=1e-5)
    assert r.output_share_video == pytest.approx(share, abs=1e-5)
    assert r.update == pytest.approx((u.norm(dim=-1) / xn).mean().item(), rel=1e-4)
    assert r.swap_change == pytest.approx(((u2 - u).norm(dim=-1) / xn).mean().item(), rel=1e-4)


def test_zero_video_values_give_zero_output_share_but_keep_the_weight():
    model = _model()
    audio, video = _inputs()
    before = cross_modal_influence(model, audio, video)
    blk = model.blocks_u[0]
    D = blk.attn.qkv.in_features
    La = 8  # audio tokens come first in the joint stream

    # zero the value slice of qkv's output for the video tokens: their value vectors are 0, queries and keys kept
    def hook(module, inputs, out):
        out = out.clone()
        out[:, La:, 2 * D:] = 0  # [B, N, 3D], rows q | k | v
        return out

    handle = blk.attn.qkv.register_forward_hook(hook)
    try:
        after = cross_modal_influence(model, audio, video)
    finally:
        handle.remove()
    assert after.output_share_video == pytest.approx([0.0, 0.0], abs=1e-6)
    assert after.value_norm_video == pytest.approx([0.0, 0.0], abs=1e-6)
    assert after.weight_on_video == pytest.approx(before.weight_on_video)  # queries and keys untouched
    assert all(x > 0.05 for x in after.weight_on_video)
    assert after.video_update == pytest.approx(0.0, abs=1e-6)
    assert min(before.output_share_video) > 0.01  # the hook made the difference


def test_same_video_everywhere_means_no_swap_change():
    model = _model()
    audio, video = _inputs()
    r = cross_modal_influence(model, audio, video[:1].expand_as(video).clone())  # one frame for every clip
    assert r.swap_change == pytest.approx(0.0, abs=1e-6)
    assert r.head_swap_change == pytest.approx([0.0, 0.0], abs=1e-6)
    assert r.factors["clip_specific"] == pytest.approx(0.0, abs=1e-5)
    assert r.video_update > 0.01


def test_masking_keeps_fewer_tokens_and_restores_train_mode():
    model = _model()
    model.train()
    r = cross_modal_influence(model, *_inputs(), mask_ratio_a=0.75, mask_ratio_v=0.5,
                              generator=torch.Generator().manual_seed(0))
    assert r.video_token_share == pytest.approx(2 / (2 + 2))  # 8 audio -> 2 kept, 4 video -> 2 kept
    assert model.training


def test_bad_inputs():
    model = _model()
    audio, video = _inputs()
    with pytest.raises(ValueError, match="same number"):
        cross_modal_influence(model, audio, video[:3])
    with pytest.raises(ValueError, match="layer"):
        cross_modal_influence(model, audio, video, layer=1)
