"""Self-checks for notebook 09 (assembling CAV-MAE), with targeted hints.

* :func:`joint_encoder` - ``fn(model, audio, video, noise_a, noise_v, mask_ratio=0.75) -> (latent, latent_c_a,
  latent_c_v)`` against :meth:`avlib.models.CAVMAE.forward_encoder` (the same tensors the model computes).

The check builds its own small :class:`~avlib.models.CAVMAE` with *randomised* LayerNorms and modality
embeddings (at initialisation all LayerNorm sets are identical, which would hide a wrong choice of set) without
touching torch's global random state. It prints one ✅ / ❌ (with a hint naming the likely mistake) / ⏭ line
and returns True only on success.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from avlib.checks import FAIL, OK, run
from avlib.masking import random_masking
from avlib.models import CAVMAE, get_config

__all__ = ["joint_encoder", "example_model"]

OUTPUTS = ("latent", "latent_c_a", "latent_c_v")


@torch.no_grad()
def example_model(seed: int = 0) -> CAVMAE:
    """A small CAV-MAE (D = 32, 2 + 1 layers, 4 x 6 audio and 4 x 4 video tokens) whose LayerNorm sets and
    modality embeddings all differ; built without changing torch's global RNG."""
    cfg = get_config("tiny", audio_length=96, num_mel_bins=64, img_size=64, embed_dim=32, num_heads=2,
                     modality_specific_depth=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CAVMAE(cfg).eval()
        g = torch.Generator().manual_seed(seed + 1)
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.5 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=g))
        for tok in (model.modality_a, model.modality_v):
            tok.copy_(torch.randn(tok.shape, generator=g))
    return model


def _inputs(model: CAVMAE, B: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(B, cfg.audio_length, cfg.num_mel_bins, generator=g)  # [B, T, F]
    video = torch.randn(B, cfg.in_chans, cfg.img_size, cfg.img_size, generator=g)  # [B, 3, H, W]
    noise_a = torch.rand(B, cfg.num_patches_a, generator=g)  # [B, La]
    noise_v = torch.rand(B, cfg.num_patches_v, generator=g)  # [B, Lv]
    return audio, video, noise_a, noise_v


def _shared(model: CAVMAE, x: torch.Tensor, modality: str | None, final: nn.Module | None) -> torch.Tensor:
    for blk in model.blocks_u:
        x = blk(x, modality)
    return x if final is None else final(x)


@torch.no_grad()
def _candidates(model: CAVMAE, audio, video, noise_a, noise_v, ratio: float) -> dict[str, list]:
    """Typical wrong versions of each output, with the hint that explains them."""
    m = model
    a_emb, v_emb = m.embed_audio(audio), m.embed_video(video)  # [B, La, D], [B, Lv, D]
    a_vis = random_masking(a_emb, ratio, noise=noise_a).x  # [B, La', D]
    v_vis = random_masking(v_emb, ratio, noise=noise_v).x  # [B, Lv', D]
    a, v = m.encode_audio(a_vis), m.encode_video(v_vis)
    n_a = a.shape[1]
    late_a = random_masking(m.encode_audio(a_emb), ratio, noise=noise_a).x  # masked after blocks_a
    late_v = random_masking(m.encode_video(v_emb), ratio, noise=noise_v).x
    joint = _shared(m, torch.cat([a, v], dim=1), None, m.norm)  # [B, La'+Lv', D]
    order = "audio tokens first: torch.cat([a, v], dim=1) (the decoder splits the joint latent at La')."
    late = ("mask right after the embeddings, before blocks_a / blocks_v: the modality-specific blocks see only "
            "the visible tokens (that is what makes the encoder cheap).")
    skip_ms = "run the modality-specific stacks (model.blocks_a / blocks_v) before the shared block."
    out: dict[str, list] = {
        "latent": [
            (_shared(m, torch.cat([v, a], dim=1), None, m.norm), order),
            (_shared(m, torch.cat([a, v], dim=1), None, None),
             "finish the joint stream with its final LayerNorm, model.norm."),
            (_shared(m, torch.cat([late_a, late_v], dim=1), None, m.norm), late),
            (_shared(m, torch.cat([a_vis, v_vis], dim=1), None, m.norm), skip_ms),
            (torch.cat([_shared(m, a, "a", m.norm_a), _shared(m, v, "v", m.norm_v)], dim=1),
             "the joint stream runs the shared block ONCE on the concatenated tokens with the joint LayerNorm set "
             "(blk(x, None), then model.norm), so audio and video tokens attend to each other."),
            (torch.cat([_shared(m, a, None, m.norm), _shared(m, v, None, m.norm)], dim=1),
             "concatenate first, then run the shared block on all visible tokens together: audio and video "
             "tokens must attend to each other."),
        ],
    }
    for key, x, mod, norm, other, late_x, vis in (("latent_c_a", a, "a", m.norm_a, m.norm_v, late_a, a_vis),
                                                 ("latent_c_v", v, "v", m.norm_v, m.norm_a, late_v, v_vis)):
        sl = slice(0, n_a) if mod == "a" else slice(n_a, None)
        out[key] = [
            (_shared(m, x, None, m.norm), f"this stream uses its own LayerNorm set: blk(x, '{mod}') in the shared "
                                          f"block(s), then model.norm_{mod}."),
            (_shared(m, x, None, norm), f"inside the shared block use the '{mod}' LayerNorm set: blk(x, '{mod}') "
                                        "(the joint set, modality=None, is for the concatenated stream)."),
            (_shared(m, x, mod, m.norm), f"finish with the stream's own final LayerNorm, model.norm_{mod}, "
                                         "not the joint model.norm."),
            (_shared(m, x, mod, other), f"finish with model.norm_{mod} (you used the other modality's)."),
            (_shared(m, x, mod, None), f"apply the final LayerNorm model.norm_{mod} after the shared block."),
            (joint[:, sl], f"the {'audio' if mod == 'a' else 'video'} stream is a separate pass of the shared "
                           f"block on the {'audio' if mod == 'a' else 'video'} tokens alone (blk(x, '{mod}')), "
                           "not a slice of the joint pass, where they attended to the other modality."),
            (_shared(m, late_x, mod, norm), late),
            (_shared(m, vis, mod, norm), skip_ms),
            (x, f"pass the tokens through the shared block(s) with the '{mod}' set and model.norm_{mod}."),
        ]
    return out


def _describe(x: object) -> str:
    return f"shape {list(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


@torch.no_grad()
def joint_encoder(fn: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                  mask_ratio: float = 0.75) -> bool:
    """Check ``fn(model, audio, video, noise_a, noise_v, mask_ratio) -> (latent, latent_c_a, latent_c_v)``
    against ``CAVMAE.forward_encoder`` on a small model with fixed inputs and masking noise."""
    name = "joint_encoder"
    model = example_model()
    audio, video, noise_a, noise_v = _inputs(model)
    ran, got = run(name, fn, model, audio.clone(), video.clone(), noise_a.clone(), noise_v.clone(), mask_ratio)
    if not ran:
        return False
    if isinstance(got, dict):
        got = tuple(got.get(k) for k in OUTPUTS)
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        print(f"{FAIL} {name} should return three tensors (latent, latent_c_a, latent_c_v), got "
              f"{_describe(got)}.")
        return False
    ref = model.forward_encoder(audio, video, mask_ratio, mask_ratio, noise_a=noise_a, noise_v=noise_v)
    la, lv = ref["latent_c_a"].shape[1], ref["latent_c_v"].shape[1]
    La, Lv, D = model.cfg.num_patches_a, model.cfg.num_patches_v, model.cfg.embed_dim
    shape_hints = {
        (La + Lv, D): f"no token was masked: keep int(L * (1 - mask_ratio)) tokens per modality (here {la} of "
                      f"{La} audio and {lv} of {Lv} video) with random_masking(x, mask_ratio, noise=...).",
        (La, D): f"the audio stream has all {La} tokens: mask before the encoder (keep {la}).",
        (Lv, D): f"the video stream has all {Lv} tokens: mask before the encoder (keep {lv}).",
        (la, D): "that is the audio tokens only; the joint latent is torch.cat([a, v], dim=1) through the shared "
                 "block.",
    }
    cands = None
    for key, g_out in zip(OUTPUTS, got, strict=True):
        exp = ref[key]
        if not isinstance(g_out, torch.Tensor):
            print(f"{FAIL} {name}: {key} should be a tensor, got {_describe(g_out)}.")
            return False
        if g_out.shape != exp.shape:
            hint = shape_hints.get(tuple(g_out.shape[1:]), "") if g_out.ndim == 3 else ""
            print(f"{FAIL} {name}: {key} has shape {list(g_out.shape)}, expected {list(exp.shape)} "
                  f"(B, {'La′+Lv′' if key == 'latent' else ('La′' if key == 'latent_c_a' else 'Lv′')}, D)."
                  + (f" Hint: {hint}" if hint else ""))
            return False
        if torch.allclose(g_out.double(), exp.double(), atol=1e-5, rtol=1e-4):
            continue
        cands = cands or _candidates(model, audio, video, noise_a, noise_v, mask_ratio)
        hint = next((h for value, h in cands[key] if value.shape == g_out.shape
                     and torch.allclose(g_out.double(), value.double(), atol=1e-5, rtol=1e-4)), None)
        if hint is None:
            hint = ("use the given masking noise (random_masking(x, mask_ratio, noise=noise_a)), embed with "
                    "model.embed_audio / embed_video, and follow the order embed -> mask -> blocks_a / blocks_v "
                    "-> shared block(s) -> final LayerNorm.")
        diff = (g_out.double() - exp.double()).abs().max().item()
        print(f"{FAIL} {name}: {key} differs from CAVMAE.forward_encoder (max abs difference {diff:.3g}). "
              f"Hint: {hint}")
        return False
    print(f"{OK} {name} matches CAVMAE.forward_encoder (joint latent and both contrastive streams)")
    return True
