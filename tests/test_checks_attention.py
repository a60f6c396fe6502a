"""The notebook-06 self-checks: right implementations pass, typical mistakes get their targeted hint."""

import math

import torch
import torch.nn.functional as F

from avlib import checks
from avlib.checks.attention import _mha


def good_attention(q, k, v, scale=None, dim=-1):
    w = (q @ k.transpose(-2, -1) * (scale or 1 / math.sqrt(q.shape[-1]))).softmax(dim=dim)
    return w @ v, w


def good_mha(x, attn):
    B, N, D = x.shape
    H = attn.num_heads
    qkv = attn.qkv(x).reshape(B, N, 3, H, D // H).permute(2, 0, 3, 1, 4)  # [3, B, H, N, hd]
    out, _ = good_attention(*qkv.unbind(0))
    return attn.proj(out.transpose(1, 2).reshape(B, N, D))


def test_attention_verdicts(last_line, run_check):
    assert checks.attention.attention(good_attention)
    assert last_line().startswith("✅ attention matches F.scaled_dot_product_attention")
    assert not checks.attention.attention(lambda q, k, v: good_attention(q, k, v, scale=1.0))
    assert "sqrt(head_dim)" in last_line()
    assert not checks.attention.attention(lambda q, k, v: good_attention(q, k, v, scale=1 / q.shape[-1]))
    assert "not 1/d" in last_line()
    assert not checks.attention.attention(lambda q, k, v: good_attention(q, k, v, dim=-2))
    assert "over the keys" in last_line()
    assert not checks.attention.attention(lambda q, k, v: F.scaled_dot_product_attention(q, k, v))
    assert "pair (out, weights)" in last_line()
    w_only = lambda q, k, v: (good_attention(q, k, v)[1], good_attention(q, k, v)[1])
    assert not checks.attention.attention(w_only)
    assert "weights @ v" in last_line()
    run_check.skips(checks.attention.attention)


def test_multi_head_attention_verdicts(last_line, run_check):
    assert checks.attention.multi_head_attention(good_mha)
    assert last_line().startswith("✅ multi_head_attention matches timm's Attention")
    assert checks.attention.multi_head_attention(lambda x, attn: _mha(x, attn))
    mistakes = {"layout": "[B, N, 3, H, head_dim]", "scale": "not 1/sqrt(D)", "proj": "attn.proj",
                "merge": "transpose(1, 2)", "heads": "num_heads", "bias": "biases"}
    for key, phrase in mistakes.items():
        kwargs = checks.attention._MHA_MISTAKES[key][0]
        assert not checks.attention.multi_head_attention(lambda x, attn, kw=kwargs: _mha(x, attn, **kw)), key
        line = last_line()
        assert line.startswith("❌") and phrase in line, (key, line)
    assert not checks.attention.multi_head_attention(lambda x, attn: x)
    assert last_line().startswith("❌")
    run_check.skips(checks.attention.multi_head_attention)


def test_reference_mha_is_timm():
    attn = checks.attention.example_attention()
    x = torch.randn(2, 6, 24)
    with torch.no_grad():
        assert torch.allclose(_mha(x, attn), attn(x), atol=1e-6)
