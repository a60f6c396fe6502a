"""How much the video tokens influence the audio tokens in CAV-MAE's shared (joint) block, beyond attention weights.

An attention weight says where a query looks, not what it takes: query ``i`` of head ``h`` adds
``W_O^h sum_j a_ij v_j`` to the residual stream, so a token with a large weight but a short *value-output vector*
``f_j = W_O^h v_j`` contributes little (Kobayashi et al., EMNLP 2020, "Attention is not only a weight: analyzing
transformers with vector norms"; the same mechanism lets "attention sinks" absorb weight without moving anything).
:func:`cross_modal_influence` measures, for the audio queries of the joint stream entering ``blocks_u[layer]``
(audio tokens, then video tokens; the joint LayerNorm set ``norm1``), three factors of the path from video to
audio:

* per head: the attention weight on video tokens, the share of the head's *output* that comes from them, and
  the value-output norms of video and audio tokens (plain and attention-weighted);
* the attention branch's update against the residual stream it is added to (``||u_i|| / ||x_i||``), and the
  part of the update made by video tokens;
* how much the update changes when each clip's video is replaced by another clip's (clip ``i`` gets clip
  ``i - 1``'s video, as in notebook 11's swap test), against the residual stream.

Vectors are measured **after** the output projection (``W_O^h``, the head's slice of ``attn.proj``; its bias
comes from no token and is left out of the per-head terms, it cancels in the swap change), because the residual
stream sees them there: a projection that shrinks one modality's value subspace shows up as influence lost.
The norms are computed in head space through ``G_h = W_O^h^T W_O^h`` (``||W_O^h o||^2 = o^T G_h o``), so no
``[B, H, N, D]`` tensor is built.

Only the shared block is measured: the decoder's attention is a second path between the modalities.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch
from torch import nn

from avlib.masking import random_masking

__all__ = ["CrossModalInfluence", "cross_modal_influence"]


@dataclass
class CrossModalInfluence:
    """What the video tokens do to the audio queries in one shared block. Per-head lists have ``H`` floats; every
    number is a mean over all audio queries of all clips (ratios are taken per query, then averaged)."""

    weight_on_video: list[float]  # [H] sum over video tokens of a_ij
    output_share_video: list[float]  # [H] ||W_O^h sum_V a_ij v_j|| / (that + ||W_O^h sum_A a_ij v_j||)
    value_norm_audio: list[float]  # [H] mean ||W_O^h v_j|| over audio tokens j
    value_norm_video: list[float]  # [H] mean ||W_O^h v_j|| over video tokens j
    attended_value_norm_video: list[float]  # [H] sum_V a_ij ||W_O^h v_j|| / sum_V a_ij (what the weight lands on)
    top_video_token: list[float]  # [H] max_V a_ij / sum_V a_ij: 1 = all video weight on one token (a sink)
    head_update: list[float]  # [H] ||W_O^h o_ih|| / ||x_i||
    head_swap_change: list[float]  # [H] ||W_O^h (o'_ih - o_ih)|| / ||x_i||, o' with another clip's video
    update: float  # ||u_i|| / ||x_i||: the whole attention branch (with proj bias) against the residual stream
    video_update: float  # ||u^V_i|| / ||x_i||: the video tokens' part of the update (all heads, no bias)
    swap_change: float  # ||u'_i - u_i|| / ||x_i||: the change of the update under the video swap
    video_token_share: float  # Lv / (La + Lv): the weight on video of uniform attention

    @property
    def factors(self) -> dict[str, float]:
        """``swap_change`` as a product of three ratios (of the means above):
        ``branch`` (update / residual) x ``video_part`` (video's update / update) x ``clip_specific``
        (swap change / video's update; 0 = the video part is the same for every clip)."""
        return {"branch": self.update, "video_part": self.video_update / max(self.update, 1e-12),
                "clip_specific": self.swap_change / max(self.video_update, 1e-12)}

    def as_dict(self) -> dict[str, float | list[float]]:
        """The fields as a plain dict (for a table or JSON)."""
        return asdict(self)


def _joint_stream(model: nn.Module, audio: torch.Tensor, video: torch.Tensor, noise_a: torch.Tensor | None,
                  noise_v: torch.Tensor | None, ratio_a: float, ratio_v: float, layer: int
                  ) -> tuple[torch.Tensor, int]:
    """Inputs -> the joint stream ``[B, La'+Lv', D]`` entering ``blocks_u[layer]`` and ``La'``."""
    a = model.embed_audio(audio)  # [B, La, D]
    v = model.embed_video(video)  # [B, Lv, D]
    if ratio_a > 0:
        a = random_masking(a, ratio_a, noise=noise_a).x  # [B, La', D]
    if ratio_v > 0:
        v = random_masking(v, ratio_v, noise=noise_v).x  # [B, Lv', D]
    a, v = model.encode_audio(a), model.encode_video(v)
    x = torch.cat([a, v], dim=1)  # [B, La'+Lv', D], audio first as in forward_encoder
    for blk in model.blocks_u[:layer]:
        x = blk(x, None)
    return x, a.shape[1]


def _no_autocast(dev: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off on ``dev`` (float32 maths for the measurement)."""
    return torch.autocast(dev.type, enabled=False) if dev.type in ("cpu", "cuda") else contextlib.nullcontext()


def _gram_norm(o: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """``||W_O^h o||`` for head-space vectors ``o`` ``[B, H, M, d]`` and ``gram`` ``[H, d, d]`` -> ``[B, H, M]``."""
    return torch.einsum("bhmd,hde,bhme->bhm", o, gram, o).clamp_min(0).sqrt()


def _attend(blk: nn.Module, x: torch.Tensor, La: int) -> dict[str, torch.Tensor]:
    """The audio queries' attention in head space: weights ``w`` ``[B, H, La, N]``, values ``v`` ``[B, H, N, d]``,
    outputs from audio / video tokens ``o_a``, ``o_v`` ``[B, H, La, d]`` and the branch update ``u`` ``[B, La, D]``."""
    attn = blk.attn
    if not isinstance(attn.norm, nn.Identity) or getattr(attn, "gate", None) is not None:
        raise ValueError("cross_modal_influence needs timm's plain Attention (no scale_norm, no gate): the output "
                         "must be linear in the value vectors.")
    h = blk.norm1(x)  # [B, N, D], the joint LayerNorm set
    B, N, D = h.shape
    H, d = attn.num_heads, attn.head_dim
    qkv = attn.qkv(h).reshape(B, N, 3, H, d)  # [B, N, 3, H, d], rows q | k | v
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, N, d]
    q, k = attn.q_norm(q), attn.k_norm(k)
    w = ((q[:, :, :La] * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # [B, H, La, N], audio queries
    o_a = w[..., :La] @ v[:, :, :La]  # [B, H, La, d] from audio tokens
    o_v = w[..., La:] @ v[:, :, La:]  # [B, H, La, d] from video tokens
    u = attn.proj((o_a + o_v).transpose(1, 2).reshape(B, La, H * d))  # [B, La, H*d] -> [B, La, D]
    return dict(w=w, v=v, o_a=o_a, o_v=o_v, u=u)


@torch.no_grad()
def cross_modal_influence(model: nn.Module, audio: torch.Tensor, video: torch.Tensor, layer: int = 0,
                          mask_ratio_a: float = 0.0, mask_ratio_v: float = 0.0,
                          generator: torch.Generator | None = None, batch_size: int = 16) -> CrossModalInfluence:
    """Measure how the video tokens act on the audio queries of shared block ``layer`` (see the module docstring).

    ``model``: a CAV-MAE encoder (:class:`avlib.models.CAVMAE` or ``CAVMAEFT``); ``audio`` ``[N, T, F]`` fbanks and
    ``video`` ``[N, 3, H, W]`` frames of ``N >= 2`` clips (clip ``i`` is swapped with clip ``i - 1``'s video, the
    first with the last). ``mask_ratio_a`` / ``mask_ratio_v`` > 0 keep a random share of tokens as in pretraining
    (noise from ``generator``, the same masks for the swapped pass); 0 uses every token. Runs in float32 on the
    model's device, in eval mode; ``batch_size`` clips at a time."""
    if audio.shape[0] != video.shape[0] or audio.shape[0] < 2:
        raise ValueError(f"need the same number (>= 2) of audio and video clips, got {audio.shape[0]} and "
                         f"{video.shape[0]}.")
    if not 0 <= layer < len(model.blocks_u):
        raise ValueError(f"layer must be in [0, {len(model.blocks_u)}) (the shared blocks), got {layer}.")
    n = audio.shape[0]
    cfg = model.cfg
    noise_a = torch.rand(n, cfg.num_patches_a, generator=generator)  # [N, La], drawn once for both passes
    noise_v = torch.rand(n, cfg.num_patches_v, generator=generator)  # [N, Lv]
    swapped = video.roll(1, dims=0)  # clip i gets clip i-1's frame
    blk, dev, was = model.blocks_u[layer], next(model.parameters()).device, model.training
    W = blk.attn.proj.weight.float()  # [D, H*d]
    H, d = blk.attn.num_heads, blk.attn.head_dim
    Wh = W.view(W.shape[0], H, d)  # [D, H*d] viewed as [D, H, d]
    gram = torch.einsum("ehd,ehf->hdf", Wh, Wh)  # [H, d, d] = W_O^h^T W_O^h
    sums: dict[str, torch.Tensor] = {}  # running sums over clips (value norms) or audio queries (the rest)
    clips = queries = 0
    La = Lv = 0

    def add(name: str, x: torch.Tensor, dims: tuple[int, ...]) -> None:
        sums[name] = sums.get(name, 0) + x.sum(dim=dims)

    model.eval()
    try:
        for s in range(0, n, batch_size):
            sl = slice(s, s + batch_size)
            kw = dict(noise_a=noise_a[sl].to(dev), noise_v=noise_v[sl].to(dev), ratio_a=mask_ratio_a,
                      ratio_v=mask_ratio_v, layer=layer)
            a = audio[sl].to(dev).float()
            with _no_autocast(dev):
                x, La = _joint_stream(model, a, video[sl].to(dev).float(), **kw)  # [B, La+Lv, D]
                x2, _ = _joint_stream(model, a, swapped[sl].to(dev).float(), **kw)  # the same, another video
                r, r2 = _attend(blk, x, La), _attend(blk, x2, La)
            B, Lv = x.shape[0], x.shape[1] - La
            w, v = r["w"], r["v"]  # [B, H, La, N], [B, H, N, d]
            xn = x[:, :La].norm(dim=-1)  # [B, La] residual norm of each audio token
            fn = _gram_norm(v, gram)  # [B, H, N] value-output norms ||W_O^h v_j||
            wv = w[..., La:].sum(-1)  # [B, H, La] weight on video
            na, nv = _gram_norm(r["o_a"], gram), _gram_norm(r["o_v"], gram)  # [B, H, La] each
            add("weight_on_video", wv, (0, 2))
            add("output_share_video", nv / (na + nv).clamp_min(1e-12), (0, 2))
            add("value_norm_audio", fn[..., :La].mean(-1), (0,))
            add("value_norm_video", fn[..., La:].mean(-1), (0,))
            attended = (w[..., La:] * fn[:, :, None, La:]).sum(-1) / wv.clamp_min(1e-12)  # [B, H, La]
            add("attended_value_norm_video", attended, (0, 2))
            add("top_video_token", w[..., La:].amax(-1) / wv.clamp_min(1e-12), (0, 2))
            add("head_update", _gram_norm(r["o_a"] + r["o_v"], gram) / xn[:, None], (0, 2))
            delta = r2["o_a"] + r2["o_v"] - r["o_a"] - r["o_v"]  # [B, H, La, d]
            add("head_swap_change", _gram_norm(delta, gram) / xn[:, None], (0, 2))
            u_v = r["o_v"].transpose(1, 2).reshape(B, La, H * d) @ W.T  # [B, La, H*d] -> [B, La, D], no bias
            add("update", r["u"].norm(dim=-1) / xn, (0, 1))
            add("video_update", u_v.norm(dim=-1) / xn, (0, 1))
            add("swap_change", (r2["u"] - r["u"]).norm(dim=-1) / xn, (0, 1))
            clips, queries = clips + B, queries + B * La
    finally:
        model.train(was)
    per_clip = ("value_norm_audio", "value_norm_video")
    out = {k: (t / (clips if k in per_clip else queries)).cpu() for k, t in sums.items()}
    return CrossModalInfluence(**{k: (t.tolist() if t.ndim else float(t)) for k, t in out.items()},
                               video_token_share=Lv / (La + Lv))
