"""Self-checks for notebook 04 (patch embedding): patchify, unpatchify and "Conv2d = Linear on patches".

Each check runs the learner's function on small fixed tensors and compares it with :mod:`avlib.patching`;
when they disagree it tries the usual mistakes (column-major tokens, channel-first pixels inside a patch, a
transposed weight, ...) and prints a targeted hint.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from avlib import patching
from avlib.checks import FAIL, OK, run

__all__ = ["patchify", "unpatchify", "conv_as_linear"]


def _example(B: int = 2, C: int = 3, H: int = 8, W: int = 12) -> torch.Tensor:
    """``[B, C, H, W]`` with all-distinct values (each value tells where it came from)."""
    return torch.arange(B * C * H * W, dtype=torch.float32).reshape(B, C, H, W)


def _patch_variants(x: torch.Tensor, p: int) -> dict[str, torch.Tensor]:
    """The usual wrong patch layouts of ``x [B, C, H, W]``, each ``[B, L, p*p*C]``."""
    B, C, H, W = x.shape
    h, w = H // p, W // p
    g = x.reshape(B, C, h, p, w, p)  # [B, C, h, i, w, j]
    return {
        "column-major": torch.einsum("nchiwj->nwhijc", g).reshape(B, h * w, p * p * C),
        "channel-first": torch.einsum("nchiwj->nhwcij", g).reshape(B, h * w, p * p * C),
        "col-row": torch.einsum("nchiwj->nhwjic", g).reshape(B, h * w, p * p * C),
    }


_PATCH_HINTS = {
    "column-major": "your tokens run down the columns first; they must be row-major, token = y * (W/p) + x "
                    "(walk along a row of patches, then go to the next row).",
    "channel-first": "inside each patch the values must be ordered (row i, column j, channel c), as in MAE: "
                     "move the channel axis last before flattening, e.g. einsum('nchpwq->nhwpqc').",
    "col-row": "inside each patch rows come before columns: index (i * p + j) * C + c holds row i, "
               "column j, channel c.",
}


def _diagnose_patches(got: torch.Tensor, x: torch.Tensor, p: int) -> str:
    """A hint for patches ``got`` that differ from ``avlib.patching.patchify(x, p)``."""
    B, C, H, W = x.shape
    L, P = (H // p) * (W // p), p * p * C
    if tuple(got.shape) == (B, P, L):
        return (f"shape {list(got.shape)} is [B, p*p*C, L]; expected [B, L, p*p*C] = {[B, L, P]}: "
                "transpose the last two dims.")
    if got.ndim != 3 or tuple(got.shape) != (B, L, P):
        return (f"shape {list(got.shape)}, expected [B, L, p*p*C] = {[B, L, P]} ({H // p} x {W // p} = "
                f"{L} tokens of {p}*{p}*{C} = {P} values).")
    for name, variant in _patch_variants(x, p).items():
        if torch.equal(got.to(variant.dtype), variant):
            return _PATCH_HINTS[name]
    ref = patching.patchify(x, p)
    got_sorted, ref_sorted = got.sort(dim=-1).values, ref.sort(dim=-1).values
    if torch.equal(got_sorted, ref_sorted):
        return ("every token holds the right pixels but in another order; inside a patch use (row i, "
                "column j, channel c), i.e. index (i * p + j) * C + c.")
    if torch.equal(got_sorted.sort(dim=1).values, ref_sorted.sort(dim=1).values):
        return "the patches are right but not their order: tokens are row-major, token = y * (W/p) + x."
    return ("your tokens mix pixels of different patches: reshape to [B, C, H/p, p, W/p, p] first (keep the "
            "two p axes apart), then permute and flatten.")


def patchify(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> bool:
    """Check ``fn(x [B, C, H, W], p) -> [B, L, p*p*C]`` against :func:`avlib.patching.patchify`."""
    cases = [(_example(2, 3, 8, 12), 4), (_example(1, 1, 16, 8), 4), (_example(2, 3, 32, 32), 16)]
    for x, p in cases:
        ran, got = run("patchify", fn, x.clone(), p)
        if not ran:
            return False
        if not isinstance(got, torch.Tensor):
            print(f"{FAIL} patchify returned {type(got).__name__}, expected a tensor [B, L, p*p*C].")
            return False
        if not torch.equal(got.to(x.dtype), patching.patchify(x, p)):
            print(f"{FAIL} patchify of a {list(x.shape)} input with p={p}: {_diagnose_patches(got, x, p)}")
            return False
    print(f"{OK} patchify matches avlib (3 inputs: 1 and 3 channels, square and non-square)")
    return True


def unpatchify(fn: Callable[..., torch.Tensor]) -> bool:
    """Check ``fn(patches [B, L, p*p*C], grid, p, channels) -> [B, C, H, W]`` inverts avlib's patchify."""
    cases = [(_example(2, 3, 8, 12), 4), (_example(1, 1, 16, 8), 4)]
    for x, p in cases:
        grid, C = (x.shape[2] // p, x.shape[3] // p), x.shape[1]
        patches = patching.patchify(x, p)
        ran, got = run("unpatchify", fn, patches.clone(), grid, p, C)
        if not ran:
            return False
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(x.shape):
            shape = list(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            print(f"{FAIL} unpatchify: got {shape}, expected {list(x.shape)} = [B, C, rows*p, cols*p].")
            return False
        if not torch.equal(got.to(x.dtype), x):
            if torch.equal(got.to(x.dtype), patches.reshape(x.shape)):
                hint = ("a plain reshape of [B, L, p*p*C] does not put the pixels back: reshape to "
                        "[B, rows, cols, p, p, C] and permute to [B, C, rows, p, cols, p] first.")
            else:
                hint = ("undo patchify step by step in reverse: reshape to [B, rows, cols, p, p, C], permute "
                        "to [B, C, rows, p, cols, p], reshape to [B, C, rows*p, cols*p].")
            print(f"{FAIL} unpatchify(patchify(x)) != x for x of shape {list(x.shape)}, p={p}. Hint: {hint}")
            return False
    print(f"{OK} unpatchify inverts avlib's patchify (exact round trip)")
    return True


def _example_conv(C: int = 3, D: int = 8, p: int = 4, seed: int = 0) -> nn.Conv2d:
    conv = nn.Conv2d(C, D, kernel_size=p, stride=p)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=g))
    return conv


def conv_as_linear(fn: Callable[[nn.Conv2d], tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """Check ``fn(conv) -> (weight [D, p*p*C], bias [D])`` such that ``F.linear(patchify(x), weight, bias)``
    equals the patch convolution ``conv(x)`` flattened to ``[B, L, D]``."""
    C, D, p = 3, 8, 4
    conv = _example_conv(C, D, p)
    ran, got = run("conv_as_linear", fn, conv)
    if not ran:
        return False
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        print(f"{FAIL} conv_as_linear must return (weight, bias), got {type(got).__name__}.")
        return False
    weight, bias = got
    if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (D,):
        print(f"{FAIL} conv_as_linear: the bias must be a [D] = [{D}] tensor: the convolution's bias is "
              "exactly the Linear's bias (conv.bias).")
        return False
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        print(f"{FAIL} conv_as_linear: the weight must be a 2-D [D, p*p*C] tensor.")
        return False
    w = conv.weight.detach()  # [D, C, p, p]
    if tuple(weight.shape) == (p * p * C, D):
        print(f"{FAIL} conv_as_linear: weight shape {list(weight.shape)}; a Linear weight is [out, in] = "
              f"[D, p*p*C] = {[D, p * p * C]} (F.linear computes x @ weight.T).")
        return False
    if tuple(weight.shape) != (D, p * p * C):
        print(f"{FAIL} conv_as_linear: weight shape {list(weight.shape)}, expected [D, p*p*C] = "
              f"{[D, p * p * C]}.")
        return False
    weight, bias = weight.detach(), bias.detach()
    if torch.equal(weight, w.reshape(D, -1)):
        print(f"{FAIL} conv_as_linear: you flattened the kernel [D, C, p, p] in (channel, row, col) order, "
              "but avlib's patches are (row, col, channel): permute it to [D, p, p, C] first. "
              "(With one channel both orders agree; the check uses C = 3.)")
        return False
    if not torch.allclose(bias, conv.bias.detach()):
        print(f"{FAIL} conv_as_linear: the bias differs from conv.bias; it carries over unchanged.")
        return False
    x = torch.randn(2, C, 8, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        by_conv = conv(x).flatten(2).transpose(1, 2)  # [B, D, h, w] -> [B, D, L] -> [B, L, D]
    by_linear = F.linear(patching.patchify(x, p), weight, bias)  # [B, L, D]
    diff = (by_linear - by_conv).abs().max().item()
    if diff > 1e-4:
        print(f"{FAIL} conv_as_linear: Linear(patchify(x)) differs from conv(x) by up to {diff:.3g}. Hint: "
              "row d of the weight must list conv.weight[d] in patchify's order: permute(0, 2, 3, 1).")
        return False
    print(f"{OK} conv_as_linear: a Linear on patches = Conv2d with kernel = stride = p (max difference "
          "< 1e-4)")
    return True
