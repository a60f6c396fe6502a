"""Self-checks for notebook 06 (attention): scaled dot-product attention and multi-head attention.

The references are PyTorch's fused ``F.scaled_dot_product_attention`` and timm's ``Attention`` (the layer
inside :class:`avlib.blocks.Block`). On a mismatch the checks compare with the usual mistakes (no or wrong
scaling, softmax over the queries, heads split or merged in the wrong order, a missing output projection or
bias) and print a targeted hint.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention

from avlib.checks import FAIL, OK, run

__all__ = ["attention", "multi_head_attention", "example_qkv", "example_attention"]

_TOL = 1e-5


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and (a.detach().double() - b.detach().double()).abs().max().item() <= _TOL


def _sdpa_variants(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> dict[str, tuple[torch.Tensor, ...]]:
    """(weights, out) of the right and of typical wrong attentions; q [..., Nq, d], k/v [..., Nk, d]."""
    d = q.shape[-1]
    logits = q @ k.transpose(-2, -1)  # [..., Nq, Nk]
    out = {}
    for name, lg, dim in (("right", logits / math.sqrt(d), -1), ("unscaled", logits, -1),
                          ("scaled by d", logits / d, -1),
                          ("softmax over queries", logits / math.sqrt(d), -2)):
        w = lg.softmax(dim=dim)
        out[name] = (w, w @ v)  # [..., Nq, Nk], [..., Nq, d]
    return out


_SDPA_HINTS = {
    "unscaled": "divide the logits q·kᵀ by sqrt(head_dim) before the softmax; without it the softmax "
                "saturates as d grows.",
    "scaled by d": "the scale is 1/sqrt(d), not 1/d.",
    "softmax over queries": "the softmax runs over the keys (dim=-1): each query's weights must sum to 1.",
}


def example_qkv(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q ``[2, 3, 5, 8]`` and k, v ``[2, 3, 7, 8]`` (B, heads, tokens, head_dim); 5 queries, 7 keys."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 3, 5, 8, generator=g), torch.randn(2, 3, 7, 8, generator=g),
            torch.randn(2, 3, 7, 8, generator=g))


def attention(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """Check ``fn(q, k, v) -> (out [..., Nq, d], weights [..., Nq, Nk])`` against
    ``F.scaled_dot_product_attention`` and ``softmax(q kᵀ / sqrt(d))``."""
    name = "attention"
    q, k, v = example_qkv()
    ran, got = run(name, fn, q.clone(), k.clone(), v.clone())
    if not ran:
        return False
    if isinstance(got, torch.Tensor) or not isinstance(got, (tuple, list)) or len(got) != 2:
        print(f"{FAIL} {name} must return a pair (out, weights), got {type(got).__name__}.")
        return False
    out, weights = got
    ref_out = F.scaled_dot_product_attention(q, k, v)
    variants = _sdpa_variants(q, k, v)
    if not isinstance(weights, torch.Tensor) or tuple(weights.shape) != (2, 3, 5, 7):
        shape = list(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
        hint = " (that is [.., Nk, Nq]: use q @ k.transpose(-2, -1))" if shape == [2, 3, 7, 5] else ""
        print(f"{FAIL} {name}: weights {shape}, expected [B, H, Nq, Nk] = [2, 3, 5, 7]{hint}.")
        return False
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(ref_out.shape):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        print(f"{FAIL} {name}: out {shape}, expected [B, H, Nq, d] = {list(ref_out.shape)} (weights @ v).")
        return False
    if not _close(weights, variants["right"][0]):
        for wrong, hint in _SDPA_HINTS.items():
            if _close(weights, variants[wrong][0]):
                print(f"{FAIL} {name}: the attention weights differ from softmax(q·kᵀ/sqrt(d)). Hint: {hint}")
                return False
        print(f"{FAIL} {name}: the attention weights differ from softmax(q @ k.transpose(-2, -1) / sqrt(d), "
              "dim=-1).")
        return False
    if not _close(out, ref_out):
        print(f"{FAIL} {name}: the weights are right but out is not; out = weights @ v.")
        return False
    print(f"{OK} {name} matches F.scaled_dot_product_attention (max difference <= {_TOL:g})")
    return True


def example_attention(dim: int = 24, num_heads: int = 3, seed: int = 0) -> Attention:
    """A timm ``Attention`` with random weights *and biases* (so that forgetting a bias shows)."""
    attn = Attention(dim, num_heads=num_heads, qkv_bias=True)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(dim if p.ndim > 1 else 4))
    return attn.eval()


def _mha(x: torch.Tensor, attn: Attention, *, layout: str = "3HD", scale: str = "head", proj: bool = True,
         merge: str = "transpose", heads: int | None = None, bias: bool = True) -> torch.Tensor:
    """Multi-head attention with ``attn``'s weights; keyword switches reproduce typical mistakes."""
    B, N, D = x.shape
    H = heads or attn.num_heads
    hd = D // H
    qkv = F.linear(x, attn.qkv.weight, attn.qkv.bias if bias else None)  # [B, N, 3D]
    if layout == "3HD":
        qkv = qkv.reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4)  # [3, B, H, N, hd]
    else:  # heads outermost: [B, N, H, 3, hd] (wrong for timm's weights)
        qkv = qkv.reshape(B, N, H, 3, hd).permute(3, 0, 2, 1, 4)  # [3, B, H, N, hd]
    q, k, v = qkv.unbind(0)  # [B, H, N, hd] each
    s = 1 / math.sqrt(hd if scale == "head" else D)
    w = (q @ k.transpose(-2, -1) * s).softmax(-1)  # [B, H, N, N]
    o = w @ v  # [B, H, N, hd]
    o = o.transpose(1, 2).reshape(B, N, D) if merge == "transpose" else o.reshape(B, N, D)  # [B, N, D]
    return F.linear(o, attn.proj.weight, attn.proj.bias if bias else None) if proj else o


_MHA_MISTAKES: dict[str, tuple[dict, str]] = {
    "layout": ({"layout": "H3D"}, "the qkv Linear's output is [q | k | v] (each D wide, heads contiguous "
                                  "inside each): reshape it to [B, N, 3, H, head_dim], not [B, N, H, 3, "
                                  "head_dim]."),
    "scale": ({"scale": "model"}, "scale by 1/sqrt(head_dim) = 1/sqrt(D / num_heads), not 1/sqrt(D)."),
    "proj": ({"proj": False}, "finish with the output projection attn.proj (it mixes the heads)."),
    "merge": ({"merge": "reshape"}, "move the head axis back next to head_dim before merging: "
                                    "out.transpose(1, 2).reshape(B, N, D)."),
    "heads": ({"heads": 1}, "split D into attn.num_heads heads of head_dim = D / num_heads each."),
    "bias": ({"bias": False}, "use the biases of attn.qkv and attn.proj too (F.linear(x, weight, bias))."),
}


def multi_head_attention(fn: Callable[[torch.Tensor, Attention], torch.Tensor]) -> bool:
    """Check ``fn(x [B, N, D], attn) -> [B, N, D]``, computed from ``attn``'s weights, against ``attn(x)``."""
    name = "multi_head_attention"
    attn = example_attention()
    x = torch.randn(2, 6, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = attn(x)  # [B, N, D]
        ran, got = run(name, fn, x.clone(), attn)
    if not ran:
        return False
    if isinstance(got, (tuple, list)) and got and isinstance(got[0], torch.Tensor):
        got = got[0]  # (out, weights) is fine
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(ref.shape):
        shape = list(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        print(f"{FAIL} {name}: got {shape}, expected [B, N, D] = {list(ref.shape)}.")
        return False
    if _close(got, ref):
        print(f"{OK} {name} matches timm's Attention (max difference <= {_TOL:g})")
        return True
    with torch.no_grad():
        for kwargs, hint in _MHA_MISTAKES.values():
            if _close(got, _mha(x, attn, **kwargs)):
                print(f"{FAIL} {name} differs from timm's Attention. Hint: {hint}")
                return False
    diff = (got.detach() - ref).abs().max().item()
    print(f"{FAIL} {name} differs from timm's Attention by up to {diff:.3g}. Hint: qkv = attn.qkv(x) -> "
          "[B, N, 3, H, hd] -> q, k, v [B, H, N, hd] -> softmax(q kᵀ/sqrt(hd)) v -> [B, N, D] -> attn.proj.")
    return False
