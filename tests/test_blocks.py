"""avlib.blocks: one attention/MLP, three LayerNorm sets, the reference's key names and maths."""

import pytest
import torch
import torch.nn.functional as F

from avlib.blocks import Block

PARTS = ("norm1", "norm1_a", "norm1_v", "attn.qkv", "attn.proj", "norm2", "norm2_a", "norm2_v", "mlp.fc1",
         "mlp.fc2")
REFERENCE_KEYS = [f"{n}.{wb}" for n in PARTS for wb in ("weight", "bias")]


def _perturbed_block(**kw):
    torch.manual_seed(0)
    blk = Block(16, 4, **kw).eval()
    with torch.no_grad():
        for p in blk.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return blk


def _plain(blk, x, n1, n2):
    """The reference maths written out: softmax(q k^T * d^-0.5) v with exact GELU."""
    B, N, D = x.shape
    h = blk.attn.num_heads
    qkv = F.linear(n1(x), blk.attn.qkv.weight, blk.attn.qkv.bias)  # [B, N, 3D], rows q | k | v
    qkv = qkv.reshape(B, N, 3, h, D // h)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, h, N, d]
    attn = ((q @ k.transpose(-2, -1)) * (D // h) ** -0.5).softmax(-1)
    x = x + F.linear((attn @ v).transpose(1, 2).reshape(B, N, D), blk.attn.proj.weight, blk.attn.proj.bias)
    hid = F.gelu(F.linear(n2(x), blk.mlp.fc1.weight, blk.mlp.fc1.bias))
    return x + F.linear(hid, blk.mlp.fc2.weight, blk.mlp.fc2.bias)


def test_key_names_match_the_reference():
    assert list(Block(16, 4).state_dict()) == REFERENCE_KEYS
    assert list(Block(16, 4, modality_norms=False).state_dict()) == [
        k for k in REFERENCE_KEYS if not k.startswith(("norm1_", "norm2_"))]


def test_modality_selects_the_norm_set_and_matches_the_plain_maths():
    blk = _perturbed_block()
    x = torch.randn(2, 7, 16)
    outs = {}
    for mod, (n1, n2) in {None: (blk.norm1, blk.norm2), "a": (blk.norm1_a, blk.norm2_a),
                          "v": (blk.norm1_v, blk.norm2_v)}.items():
        outs[mod] = blk(x, mod)
        assert (outs[mod] - _plain(blk, x, n1, n2)).abs().max() < 1e-5
    assert (outs[None] - outs["a"]).abs().max() > 1e-3 and (outs["a"] - outs["v"]).abs().max() > 1e-3


def test_explicit_attention_equals_fused_and_runs_under_autocast():
    fused = _perturbed_block()
    explicit = _perturbed_block(fused_attn=False)
    assert not explicit.attn.fused_attn
    x = torch.randn(2, 9, 16)
    assert (fused(x, "v") - explicit(x, "v")).abs().max() < 1e-5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fused(x)  # the explicit path (faster than the fused CPU kernel in bf16)
    assert y.dtype == torch.float32 and (y - fused(x)).abs().max() < 0.1


def test_layernorm_eps_and_errors():
    blk = Block(16, 4)
    assert blk.norm1.eps == 1e-5 and blk.norm2_v.eps == 1e-5
    assert Block(16, 4, ln_eps=1e-6).norm1.eps == 1e-6
    with pytest.raises(ValueError, match="no per-modality"):
        Block(16, 4, modality_norms=False)(torch.randn(1, 3, 16), "a")
    with pytest.raises(ValueError, match="modality must be"):
        blk(torch.randn(1, 3, 16), "x")


def test_attention_maps_are_the_softmax_weights():
    from timm.models.vision_transformer import Attention

    from avlib.blocks import attention_maps

    torch.manual_seed(0)
    attn = Attention(dim=12, num_heads=3, qkv_bias=True).eval()
    x = torch.randn(2, 5, 12)  # [B, N, D]
    w = attention_maps(attn, x)  # [B, H, N, N]
    q, k, _ = attn.qkv(x).reshape(2, 5, 3, 3, 4).permute(2, 0, 3, 1, 4)  # 3 x [B, H, N, D/H]
    torch.testing.assert_close(w, (q @ k.transpose(-2, -1) * 4 ** -0.5).softmax(-1))
    assert attn.fused_attn == Attention(dim=12, num_heads=3).fused_attn  # setting restored


def test_conv_stem_keeps_the_token_grid_and_sees_only_its_window():
    from avlib.blocks import conv_stem, patch_embed

    pe = patch_embed((32, 64), 16, 1, 24, stem="conv")
    x = torch.randn(2, 1, 32, 64)
    assert pe(x).shape == (2, 2 * 4, 24)  # [B, L = (32/16) * (64/16), D], the linear stem's grid
    assert patch_embed((32, 64), 16, 1, 24).proj.kernel_size == (16, 16)  # the reference's one p x p kernel
    stem = conv_stem(3, 24, 16).eval()
    img = torch.randn(1, 3, 64, 64)
    base = stem(img)  # [1, D, 4, 4]

    def changed(r: slice, c: slice) -> torch.Tensor:  # [4, 4] which tokens a change of img[r, c] reaches
        x = img.clone()
        x[..., r, c] += 5.0
        return ((stem(x) - base).abs().sum(1)[0] > 0).int()

    # token (i, j) sees rows/columns 16 i - 15 .. 16 i + 15: its patch and the 15 pixels above / left of it
    assert changed(slice(32, 33), slice(32, 33)).nonzero().tolist() == [[2, 2]]
    assert changed(slice(31, 32), slice(31, 32)).nonzero().tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]]
    assert changed(slice(0, 1), slice(0, 1)).nonzero().tolist() == [[0, 0]]


def test_stem_errors():
    from avlib.blocks import conv_stem, patch_embed
    from avlib.models import get_config

    with pytest.raises(ValueError, match="power-of-2"):
        conv_stem(3, 24, 12)
    with pytest.raises(ValueError, match="stem must be one of"):
        patch_embed(64, 16, 3, 24, stem="cnn")
    with pytest.raises(ValueError, match="stem must be one of"):
        get_config("tiny", stem="resnet")
