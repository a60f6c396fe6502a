"""The CAV-MAE transformer block: one attention + MLP shared by all modalities, one LayerNorm set per
modality.

A pre-norm ViT block (``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``) built from timm's public
``Attention`` (fused ``scaled_dot_product_attention``, qkv rows ``[q; k; v]``, heads contiguous) and ``Mlp``
(exact GELU), with up to three LayerNorm sets picked by ``modality``:

* ``None`` - the joint set ``norm1`` / ``norm2`` (modality-specific stacks, the joint stream, the decoder);
* ``"a"`` - ``norm1_a`` / ``norm2_a`` (audio stream through the shared block);
* ``"v"`` - ``norm1_v`` / ``norm2_v`` (video stream through the shared block).

Only the shared block(s) ``blocks_u`` ever use the ``_a`` / ``_v`` sets. The reference builds them in *every*
block (``blocks_a``, ``blocks_v``, ``decoder_blocks``) where they never receive a gradient; avlib builds them
only where ``modality_norms=True`` (see ``CAVMAEConfig.unused_norms`` to keep the reference layout).
LayerNorm eps is 1e-5 as in the reference (``nn.LayerNorm``'s default; timm ViTs use 1e-6).
"""

from __future__ import annotations

import torch
from timm.layers import Mlp, PatchEmbed
from timm.models.vision_transformer import Attention
from torch import nn

__all__ = ["Block", "MODALITIES", "STEMS", "attention_maps", "conv_stem", "patch_embed", "init_patch_kernel",
           "init_linear_and_norm"]

MODALITIES = (None, "a", "v")


class Block(nn.Module):
    """Pre-norm transformer block ``[B, N, D] -> [B, N, D]`` with shared weights and per-modality
    LayerNorms."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 ln_eps: float = 1e-5, modality_norms: bool = True, fused_attn: bool = True) -> None:
        super().__init__()
        self.modality_norms = modality_norms
        # registration order = the reference's state-dict order
        self.norm1 = nn.LayerNorm(dim, eps=ln_eps)
        if modality_norms:
            self.norm1_a = nn.LayerNorm(dim, eps=ln_eps)
            self.norm1_v = nn.LayerNorm(dim, eps=ln_eps)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.attn.fused_attn = fused_attn  # timm's public switch
        self.norm2 = nn.LayerNorm(dim, eps=ln_eps)
        if modality_norms:
            self.norm2_a = nn.LayerNorm(dim, eps=ln_eps)
            self.norm2_v = nn.LayerNorm(dim, eps=ln_eps)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def norms(self, modality: str | None = None) -> tuple[nn.LayerNorm, nn.LayerNorm]:
        """The ``(pre-attention, pre-MLP)`` LayerNorm pair of ``modality`` (None | 'a' | 'v')."""
        if modality is None:
            return self.norm1, self.norm2
        if modality not in ("a", "v"):
            raise ValueError(f"modality must be None, 'a' or 'v', got {modality!r}.")
        if not self.modality_norms:
            raise ValueError("this block has no per-modality LayerNorms (modality_norms=False); "
                             "call it with modality=None.")
        return (self.norm1_a, self.norm2_a) if modality == "a" else (self.norm1_v, self.norm2_v)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention ``[B, N, D] -> [B, N, D]`` with the weights of timm's ``Attention``.

        timm's fused path (``F.scaled_dot_product_attention``) in full precision; the explicit maths
        ``softmax((q k^T) * d^-0.5) v`` (the reference's order) if ``fused_attn`` is off or under CPU
        autocast, where it beats the fused CPU kernel (a bf16 ``base`` pretraining step: 15 % faster).
        Both match the reference within 3e-6 on the parity set.
        """
        a = self.attn
        if a.fused_attn and not (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")):
            return a(x)
        B, N, D = x.shape
        qkv = a.qkv(x).reshape(B, N, 3, a.num_heads, a.head_dim)  # [B, N, 3, h, d], rows q | k | v
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, h, N, d]
        attn = (q @ k.transpose(-2, -1)) * a.scale  # [B, h, N, N]
        x = attn.softmax(dim=-1) @ v  # [B, h, N, d]
        return a.proj(x.transpose(1, 2).reshape(B, N, D))  # [B, N, h*d] -> [B, N, D]

    def forward(self, x: torch.Tensor, modality: str | None = None) -> torch.Tensor:
        n1, n2 = self.norms(modality)
        x = x + self.attention(n1(x))  # [B, N, D]
        return x + self.mlp(n2(x))  # [B, N, D]


STEMS = ("linear", "conv")  # how patch_embed turns pixels into tokens


def conv_stem(in_chans: int, embed_dim: int, patch_size: int = 16, width: int = 24) -> nn.Sequential:
    """Early convolutions (Xiao et al., 2021, "Early Convolutions Help Transformers See Better"): log2(p)
    3x3 stride-2 convolutions (BatchNorm + ReLU, channels ``width`` doubling) and a 1x1 projection to
    ``embed_dim``: ``[B, C, H, W] -> [B, D, H/p, W/p]``, the same grid as the linear patch embedding.

    Token ``(i, j)`` sees its own patch and the ``p - 1`` pixels above and to the left of it (a (2p - 1)-pixel
    window; the stride-2 / padding-1 arithmetic makes it one-sided). That locality prior lets a small ViT learn
    from a few hundred clips. Under MAE masking a visible token thus sees part of a masked neighbour above or to
    its left; the decoder still has to draw the rest. Under DDP the BatchNorm
    statistics are each process's own (as in torchvision's references without ``--sync-bn``)."""
    n = patch_size.bit_length() - 1
    if patch_size != 2 ** n or n < 1:
        raise ValueError(f"the conv stem needs a power-of-2 patch size, got {patch_size}; use stem='linear'.")
    chans = [in_chans] + [min(width * 2 ** i, embed_dim) for i in range(n)]
    layers: list[nn.Module] = []
    for a, b in zip(chans[:-1], chans[1:], strict=True):  # [B, a, h, w] -> [B, b, h/2, w/2]
        layers += [nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Conv2d(chans[-1], embed_dim, 1))  # [B, D, H/p, W/p]


def patch_embed(img_size: int | tuple[int, int], patch_size: int, in_chans: int, embed_dim: int,
                stem: str = "linear") -> PatchEmbed:
    """timm's ``PatchEmbed`` ``[B, C, H, W] -> [B, L, D]`` (tokens row-major): ``stem='linear'`` is the
    reference's one p x p convolution (a Linear on each patch); ``'conv'`` swaps in :func:`conv_stem`."""
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}, got {stem!r}.")
    pe = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
    if stem == "conv":
        pe.proj = conv_stem(in_chans, embed_dim, patch_size)
    return pe


def init_patch_kernel(conv: nn.Module) -> None:
    """Xavier-uniform init of a patch-embedding kernel viewed as the Linear it is, ``[D, C*p*p]`` (MAE); a
    :func:`conv_stem` keeps PyTorch's default (Kaiming-uniform) convolution init."""
    if not isinstance(conv, nn.Conv2d):
        return
    w = conv.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # [D, C, p, p] viewed as [D, C*p*p]


def init_linear_and_norm(module: nn.Module) -> None:
    """MAE / CAV-MAE init of every submodule: Linear xavier-uniform with zero bias, LayerNorm (1, 0)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def attention_maps(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """Attention weights ``[B, H, N, N]`` of timm's ``Attention`` on ``x`` ``[B, N, D]``.

    The fused kernel (``scaled_dot_product_attention``) never materialises the weights, so this runs the module's
    explicit softmax path once and reads the weights from ``attn_drop``'s input with a forward hook; the module's
    ``fused_attn`` setting is restored afterwards. For a :class:`Block` pass its ``attn`` and the normalised input
    (``block.norm1(x)``, or the matching stream's LayerNorm in the shared block)."""
    seen: list[torch.Tensor] = []
    hook = attn.attn_drop.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    fused, attn.fused_attn = attn.fused_attn, False
    try:
        with torch.no_grad():
            attn(x)
    finally:
        attn.fused_attn = fused
        hook.remove()
    return seen[0]
