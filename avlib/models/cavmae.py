"""CAV-MAE (Gong et al., ICLR 2023): the pretraining model :class:`CAVMAE` and the classifier `CAVMAEFT`.

Numerically identical to the official implementation (checked against its golden tensors in
``tests/test_parity.py``) and key-compatible with its checkpoints through :func:`avlib.convert.from_cavmae`.

One pretraining step (``base``: La = 512 audio tokens, Lv = 196 video tokens, D = 768; ' = visible only)::

    audio [B,T,F] -> [B,1,F,T] -> patch_embed_a + pos_embed_a + modality_a -> mask -> blocks_a -> a [B,La',D]
    video [B,3,H,W]            -> patch_embed_v + pos_embed_v + modality_v -> mask -> blocks_v -> v [B,Lv',D]
    joint:  concat[a, v] -> blocks_u (joint norms) -> norm   -> latent -> decoder -> pred_a, pred_v (MAE loss)
    audio:  a            -> blocks_u (_a norms)    -> norm_a -> latent_c_a --+ mean-pool -> InfoNCE
    video:  v            -> blocks_u (_v norms)    -> norm_v -> latent_c_v --+

Differences from the reference (none changes a result): no global monkey-patching of timm, no prints,
LayerNorm sets only where used (``unused_norms=True`` restores the reference layout), configurable mel bins /
shared depth / grid, several shared layers are applied in sequence on every stream (the reference's
audio/video streams would re-apply each shared layer to the un-updated input; identical at its depth of 1),
and named outputs.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from avlib.blocks import Block, init_linear_and_norm, init_patch_kernel, patch_embed
from avlib.losses import contrastive_accuracy, contrastive_logits, info_nce, mae_loss
from avlib.masking import MASK_MODES, mask_tokens, num_kept
from avlib.models.config import CAVMAEConfig
from avlib.models.mae import add_mask_tokens
from avlib.patching import audio_to_image, patchify_audio, patchify_image
from avlib.pos_embed import get_2d_sincos_pos_embed

__all__ = ["CAVMAEOutput", "CAVMAEEncoder", "CAVMAE", "CAVMAEFT", "FT_MODES", "MODE_INPUTS", "mode_inputs",
           "count_parameters"]

# the forward modes and the inputs each needs: the one table the models, train, evaluate and predict read
MODE_INPUTS: dict[str, tuple[str, ...]] = {
    "multimodal": ("audio", "video"), "audioonly": ("audio",), "videoonly": ("video",),
    "missingaudioonly": ("audio",), "missingvideoonly": ("video",)}  # missing*: an AV model given one input
FT_MODES = tuple(MODE_INPUTS)


def mode_inputs(mode: str) -> tuple[str, ...]:
    """The inputs (``"audio"``, ``"video"``) forward mode ``mode`` needs; a clear error for an unknown mode."""
    if mode not in MODE_INPUTS:
        raise ValueError(f"unknown mode {mode!r}; choose one of {FT_MODES}.")
    return MODE_INPUTS[mode]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return total, sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class CAVMAEOutput:
    """Everything one :class:`CAVMAE` forward computes. Losses are 0-d tensors; ``loss_c`` is already
    weighted. With ``contrastive=False`` the contrastive fields are None and ``loss`` is ``loss_mae``."""

    loss: torch.Tensor  # loss_mae + loss_c
    loss_mae: torch.Tensor  # weighted sum of the two MAE losses
    loss_mae_a: torch.Tensor
    loss_mae_v: torch.Tensor
    loss_c: torch.Tensor | None  # contrastive loss x contrast_loss_weight
    loss_c_unweighted: torch.Tensor | None
    c_acc: torch.Tensor | None  # in-batch contrastive top-1 accuracy
    pred_a: torch.Tensor | None  # [B, La, p*p] reconstruction of every audio patch (None if mae weight is 0)
    pred_v: torch.Tensor | None  # [B, Lv, p*p*3]
    mask_a: torch.Tensor  # [B, La], 1 = masked
    mask_v: torch.Tensor  # [B, Lv]
    ids_restore_a: torch.Tensor  # [B, La]
    ids_restore_v: torch.Tensor  # [B, Lv]
    ids_keep_a: torch.Tensor  # [B, La'] visible audio tokens, in encoder order
    ids_keep_v: torch.Tensor  # [B, Lv']
    latent: torch.Tensor  # [B, La'+Lv', D] joint latent (decoder input), audio tokens first
    latent_c_a: torch.Tensor  # [B, La', D] audio stream (contrastive)
    latent_c_v: torch.Tensor  # [B, Lv', D] video stream
    pooled_a: torch.Tensor  # [B, D] float32 mean of latent_c_a: the audio embedding of the contrastive loss
    pooled_v: torch.Tensor  # [B, D] float32 mean of latent_c_v
    contrast_logits: torch.Tensor | None  # [B, B] cos(audio_i, video_j) / temperature

    def losses(self) -> dict[str, float]:
        """The scalar losses and accuracy as python floats (for logging; absent ones left out)."""
        names = ("loss", "loss_mae", "loss_mae_a", "loss_mae_v", "loss_c", "c_acc")
        return {n: float(getattr(self, n).detach()) for n in names if getattr(self, n) is not None}


class CAVMAEEncoder(nn.Module):
    """The encoder both models share: patch + positional + modality embeddings, modality-specific and shared
    blocks.

    Building blocks (used by the models and by the notebooks, in this order):
    :meth:`embed_audio` / :meth:`embed_video` -> :meth:`encode_audio` / :meth:`encode_video` ->
    :meth:`forward_shared`.
    """

    def __init__(self, cfg: CAVMAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, p = cfg.embed_dim, cfg.patch_size
        self.modality_a = nn.Parameter(torch.zeros(1, 1, D))
        self.modality_v = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed_a = nn.Parameter(torch.zeros(1, cfg.num_patches_a, D), requires_grad=cfg.tr_pos)
        self.pos_embed_v = nn.Parameter(torch.zeros(1, cfg.num_patches_v, D), requires_grad=cfg.tr_pos)
        self._init_decoder_params()  # keeps the reference's parameter order (no-op in the encoder)
        self.patch_embed_a = patch_embed((cfg.num_mel_bins, cfg.audio_length), p, 1, D, cfg.stem)  # [B,1,F,T]
        self.patch_embed_v = patch_embed(cfg.img_size, p, cfg.in_chans, D, cfg.stem)

        def block(shared: bool) -> Block:
            return Block(D, cfg.num_heads, cfg.mlp_ratio, qkv_bias=True, ln_eps=cfg.ln_eps,
                         modality_norms=shared or cfg.unused_norms, fused_attn=cfg.fused_attn)

        self.blocks_a = nn.ModuleList([block(False) for _ in range(cfg.modality_specific_depth)])
        self.blocks_v = nn.ModuleList([block(False) for _ in range(cfg.modality_specific_depth)])
        self.blocks_u = nn.ModuleList([block(True) for _ in range(cfg.shared_depth)])
        self.norm_a = nn.LayerNorm(D, eps=cfg.ln_eps)
        self.norm_v = nn.LayerNorm(D, eps=cfg.ln_eps)
        self.norm = nn.LayerNorm(D, eps=cfg.ln_eps)

    def _init_decoder_params(self) -> None:
        """Hook for subclasses that register more top-level parameters (kept in the reference's order)."""

    # --- initialisation (the reference's: sin-cos tables, xavier Linear/patch kernels, N(0, .02) tokens) ----
    @torch.no_grad()
    def init_weights(self) -> None:
        """Re-initialise every parameter as the reference does (uses torch's global RNG: seed it first)."""
        cfg = self.cfg
        self.pos_embed_a.copy_(get_2d_sincos_pos_embed(cfg.embed_dim, *cfg.audio_grid)[None])
        self.pos_embed_v.copy_(get_2d_sincos_pos_embed(cfg.embed_dim, *cfg.video_grid)[None])
        for pe in (self.patch_embed_a, self.patch_embed_v):
            init_patch_kernel(pe.proj)
        for tok in self._tokens():
            nn.init.normal_(tok, std=0.02)
        init_linear_and_norm(self)

    def _tokens(self) -> list[nn.Parameter]:
        return [self.modality_a, self.modality_v]

    # --- inputs -> tokens -----------------------------------------------------------------------------------
    def _check_audio(self, audio: torch.Tensor) -> None:
        T, F = self.cfg.audio_length, self.cfg.num_mel_bins
        if audio.ndim != 3 or tuple(audio.shape[1:]) != (T, F):
            hint = ""
            if audio.ndim == 3 and tuple(audio.shape[1:]) == (F, T):
                hint = " It looks frequency-major: pass audio.transpose(1, 2)."
            elif audio.ndim == 3 and audio.shape[2] == F:
                hint = (f" Pad or crop the fbank to T={T} frames, or build the model with "
                        f"audio_length={audio.shape[1]} (a multiple of {self.cfg.patch_size}).")
            raise ValueError(f"audio must be a time-major fbank [B, T={T}, F={F}], got {list(audio.shape)}."
                             + hint)

    def _check_video(self, video: torch.Tensor) -> None:
        S, C = self.cfg.img_size, self.cfg.in_chans
        if video.ndim != 4 or tuple(video.shape[1:]) != (C, S, S):
            raise ValueError(f"video must be frames [B, {C}, {S}, {S}], got {list(video.shape)}. Resize/crop "
                             f"the frames to {S} px or build the model with img_size=...; a clip of V frames "
                             "[B, V, 3, H, W] goes to CAVMAEFT.forward_multiframe.")

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Fbank ``[B, T, F]`` -> tokens ``[B, La, D]`` (patch + positional + modality embedding)."""
        self._check_audio(audio)
        x = self.patch_embed_a(audio_to_image(audio))  # [B, 1, F, T] -> [B, La, D], token f * (T/p) + t
        x = x + self.pos_embed_a
        return x + self.modality_a

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        """Frames ``[B, 3, H, W]`` -> tokens ``[B, Lv, D]``."""
        self._check_video(video)
        x = self.patch_embed_v(video)  # [B, Lv, D], token y * (W/p) + x
        x = x + self.pos_embed_v
        return x + self.modality_v

    def encode_audio(self, x: torch.Tensor) -> torch.Tensor:
        """Audio tokens ``[B, N, D]`` through the audio-specific blocks (joint LayerNorm set)."""
        for blk in self.blocks_a:
            x = blk(x)
        return x

    def encode_video(self, x: torch.Tensor) -> torch.Tensor:
        """Video tokens ``[B, N, D]`` through the video-specific blocks."""
        for blk in self.blocks_v:
            x = blk(x)
        return x

    def forward_shared(self, x: torch.Tensor, modality: str | None = None) -> torch.Tensor:
        """Tokens ``[B, N, D]`` through the shared block(s) with the LayerNorm set of ``modality`` and the
        matching final norm: ``None`` -> joint norms + ``norm``; ``'a'`` -> ``_a`` norms + ``norm_a``; ``'v'``
        -> ``norm_v``."""
        for blk in self.blocks_u:
            x = blk(x, modality)
        final = {None: self.norm, "a": self.norm_a, "v": self.norm_v}[modality]
        return final(x)

    # --- the timm contract: forward_features (unpooled tokens) -> forward_head (pool, classify) -------------
    @staticmethod
    def _need(x: torch.Tensor | None, what: str, mode: str) -> torch.Tensor:
        if x is None:
            raise ValueError(f"mode {mode!r} needs {what}, got None.")
        return x

    def _encode(self, audio: torch.Tensor | None, video: torch.Tensor | None, mode: str
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The inputs ``mode`` needs through embedding and modality-specific blocks (others: None)."""
        need = mode_inputs(mode)
        a = v = None
        if "audio" in need:
            a = self.encode_audio(self.embed_audio(self._need(audio, "audio [B, T, F]", mode)))  # [B, La, D]
        if "video" in need:
            v = self.encode_video(self.embed_video(self._need(video, "video [B, 3, H, W]", mode)))  # [B, Lv, D]
        return a, v

    def _shared(self, a: torch.Tensor | None, v: torch.Tensor | None, mode: str) -> torch.Tensor:
        """Encoded tokens -> the shared block(s) and final norm of ``mode`` -> tokens ``[B, N, D]``."""
        if mode == "multimodal":
            return self.forward_shared(torch.cat([a, v], dim=1), None)  # [B, La+Lv, D]
        x, stream = (a, "a") if mode in ("audioonly", "missingaudioonly") else (v, "v")
        if mode in ("audioonly", "videoonly"):
            return self.forward_shared(x, stream)  # [B, La or Lv, D]
        return (self.forward_shared(x, None) + self.forward_shared(x, stream)) / 2  # joint and own norms averaged

    def forward_features(self, audio: torch.Tensor | None, video: torch.Tensor | None = None,
                         mode: str = "multimodal") -> torch.Tensor:
        """Un-masked, unpooled tokens ``[B, N, D]`` after the shared block(s) and final norm of ``mode``
        (:data:`FT_MODES`; N = La + Lv for ``multimodal``, else La or Lv; the ``missing*only`` modes average the
        joint-norm and own-stream tokens). Differentiable; an input the mode does not need may be None."""
        return self._shared(*self._encode(audio, video, mode), mode)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens ``[B, N, D]`` -> the mean-pooled embedding ``[B, D]`` (a classifier adds its head)."""
        return x.mean(dim=1)

    def forward_feat(self, audio: torch.Tensor | None, video: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The two single-modality streams (retrieval): ``forward_features`` in ``audioonly`` and ``videoonly``
        mode -> ``[B, La, D]``, ``[B, Lv, D]``. Either input may be None (its output is then None)."""
        feat_a = self.forward_features(audio, None, "audioonly") if audio is not None else None
        feat_v = self.forward_features(None, video, "videoonly") if video is not None else None
        return feat_a, feat_v

    # --- the timm contract for optimisers -------------------------------------------------------------------
    def no_weight_decay(self) -> set[str]:
        """Parameters kept out of weight decay: positional tables and learned tokens (optimisers also exempt
        every 1-D parameter: biases, norms, a learned temperature)."""
        return {"pos_embed_a", "pos_embed_v", "modality_a", "modality_v"}

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """timm's layer grouping (``timm.models.group_parameters``): embeddings, the modality-specific blocks (layer
        i of both streams together), the shared blocks; everything else (norms, head, decoder) after them."""
        return dict(stem=r"^(?:patch_embed_[av]|pos_embed_[av]|modality_[av])", blocks=r"^blocks_[av]\.(\d+)",
                    shared=r"^blocks_u\.(\d+)")


class CAVMAE(CAVMAEEncoder):
    """Contrastive audio-visual masked autoencoder (pretraining model). ``forward`` returns a
    :class:`CAVMAEOutput`.

    >>> model = CAVMAE(CAVMAEConfig())                                   # doctest: +SKIP
    >>> out = model(audio, video)   # audio [B, T, F] fbank, video [B, 3, H, W]; masks 75 % of each modality
    >>> out.loss.backward()
    """

    def __init__(self, cfg: CAVMAEConfig | None = None) -> None:
        cfg = cfg or CAVMAEConfig()
        super().__init__(cfg)
        Dd = cfg.decoder_embed_dim
        p = cfg.patch_size
        self.decoder_embed = nn.Linear(cfg.embed_dim, Dd)
        self.decoder_blocks = nn.ModuleList([
            Block(Dd, cfg.decoder_num_heads, cfg.mlp_ratio, qkv_bias=True, ln_eps=cfg.ln_eps,
                  modality_norms=cfg.unused_norms, fused_attn=cfg.fused_attn)
            for _ in range(cfg.decoder_depth)])
        self.decoder_norm = nn.LayerNorm(Dd, eps=cfg.ln_eps)
        self.decoder_pred_a = nn.Linear(Dd, p * p)
        self.decoder_pred_v = nn.Linear(Dd, p * p * cfg.in_chans)
        self.init_weights()

    def _init_decoder_params(self) -> None:
        cfg = self.cfg
        Dd = cfg.decoder_embed_dim
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        self.decoder_modality_a = nn.Parameter(torch.zeros(1, 1, Dd))
        self.decoder_modality_v = nn.Parameter(torch.zeros(1, 1, Dd))
        La, Lv = cfg.num_patches_a, cfg.num_patches_v
        self.decoder_pos_embed_a = nn.Parameter(torch.zeros(1, La, Dd), requires_grad=cfg.tr_pos)
        self.decoder_pos_embed_v = nn.Parameter(torch.zeros(1, Lv, Dd), requires_grad=cfg.tr_pos)
        if cfg.learnable_temperature:  # CLIP-style: logit_scale = log(1 / temperature)
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.contrast_temperature)))

    def _tokens(self) -> list[nn.Parameter]:
        return [*super()._tokens(), self.decoder_modality_a, self.decoder_modality_v, self.mask_token]

    def no_weight_decay(self) -> set[str]:
        extra = {"decoder_pos_embed_a", "decoder_pos_embed_v", "decoder_modality_a", "decoder_modality_v",
                 "mask_token"}
        return super().no_weight_decay() | extra | ({"logit_scale"} if self.cfg.learnable_temperature else set())

    @torch.no_grad()
    def init_weights(self) -> None:
        super().init_weights()
        cfg = self.cfg
        self.decoder_pos_embed_a.copy_(get_2d_sincos_pos_embed(cfg.decoder_embed_dim, *cfg.audio_grid)[None])
        self.decoder_pos_embed_v.copy_(get_2d_sincos_pos_embed(cfg.decoder_embed_dim, *cfg.video_grid)[None])
        if cfg.learnable_temperature:
            self.logit_scale.fill_(math.log(1.0 / cfg.contrast_temperature))

    @property
    def temperature(self) -> torch.Tensor | float:
        """Contrastive temperature: fixed ``cfg.contrast_temperature`` or ``exp(-logit_scale)`` (>= 0.01)."""
        if self.cfg.learnable_temperature:
            return torch.exp(-self.logit_scale.clamp(max=math.log(100.0)))
        return self.cfg.contrast_temperature

    # --- encoder --------------------------------------------------------------------------------------------
    def forward_encoder(self, audio: torch.Tensor, video: torch.Tensor, mask_ratio_a: float = 0.75,
                        mask_ratio_v: float = 0.75, mask_mode: str = "unstructured",
                        generator: torch.Generator | None = None, noise_a: torch.Tensor | None = None,
                        noise_v: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Embed, mask (audio noise drawn before video), encode. Returns a dict of latents, masks and ids."""
        if mask_mode not in MASK_MODES:
            raise ValueError(f"unknown mask_mode {mask_mode!r}; choose one of {MASK_MODES}.")
        a = self.embed_audio(audio)  # [B, La, D]
        v = self.embed_video(video)  # [B, Lv, D]
        a, mask_a, ids_restore_a, ids_keep_a = mask_tokens(a, mask_ratio_a, mask_mode, self.cfg.audio_grid,
                                                           noise=noise_a, generator=generator)  # [B, La', D]
        v, mask_v, ids_restore_v, ids_keep_v = mask_tokens(v, mask_ratio_v, "unstructured",
                                                           noise=noise_v, generator=generator)  # [B, Lv', D]
        a = self.encode_audio(a)
        v = self.encode_video(v)
        latent = self.forward_shared(torch.cat([a, v], dim=1), None)  # [B, La'+Lv', D]
        return dict(latent=latent, latent_c_a=self.forward_shared(a, "a"),
                    latent_c_v=self.forward_shared(v, "v"),
                    mask_a=mask_a, mask_v=mask_v, ids_restore_a=ids_restore_a, ids_restore_v=ids_restore_v,
                    ids_keep_a=ids_keep_a, ids_keep_v=ids_keep_v)

    # --- decoder --------------------------------------------------------------------------------------------
    def forward_decoder(self, latent: torch.Tensor, ids_restore_a: torch.Tensor, ids_restore_v: torch.Tensor,
                        len_keep_a: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint latent ``[B, La'+Lv', D]`` -> predictions ``[B, La, p*p]``, ``[B, Lv, p*p*3]`` for every
        patch.

        The first ``len_keep_a`` latent tokens are audio. Each modality gets mask tokens appended and is
        unshuffled with its ``ids_restore``; then decoder positional and modality embeddings are added.
        """
        x = self.decoder_embed(latent)  # [B, La'+Lv', Dd]
        La, Lv = ids_restore_a.shape[1], ids_restore_v.shape[1]
        a = add_mask_tokens(x[:, :len_keep_a], self.mask_token, ids_restore_a)  # [B, La, Dd], original order
        v = add_mask_tokens(x[:, len_keep_a:], self.mask_token, ids_restore_v)  # [B, Lv, Dd]
        a = a + self.decoder_pos_embed_a + self.decoder_modality_a
        v = v + self.decoder_pos_embed_v + self.decoder_modality_v
        x = torch.cat([a, v], dim=1)  # [B, La+Lv, Dd]
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        pred_a = self.decoder_pred_a(x[:, :La])  # [B, La, p*p]
        return pred_a, self.decoder_pred_v(x[:, La:La + Lv])  # [B, Lv, p*p*3]

    # --- losses ---------------------------------------------------------------------------------------------
    def targets(self, audio: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction targets (before ``norm_pix``): ``patchify_audio(audio)``,
        ``patchify_image(video)``."""
        p = self.cfg.patch_size
        return patchify_audio(audio, p), patchify_image(video, p)

    def forward(self, audio: torch.Tensor, video: torch.Tensor, mask_ratio_a: float = 0.75,
                mask_ratio_v: float = 0.75, mask_mode: str = "unstructured",
                generator: torch.Generator | None = None, noise_a: torch.Tensor | None = None,
                noise_v: torch.Tensor | None = None, contrastive: bool = True) -> CAVMAEOutput:
        """One pretraining forward: audio ``[B, T, F]``, video ``[B, 3, H, W]`` -> :class:`CAVMAEOutput`.

        ``mask_mode`` applies to audio (unstructured | time | freq | tf); video is always unstructured.
        Masking noise: ``noise_a [B, La]`` / ``noise_v [B, Lv]`` if given, else drawn from ``generator``
        (audio first), else from torch's global RNG. ``contrastive=False`` returns the pooled embeddings
        without the in-batch contrastive loss, for a caller that computes it once on a larger batch (the
        training loop: against the negatives of every rank).
        """
        cfg = self.cfg
        if cfg.mae_loss_weight != 0 and (num_kept(cfg.num_patches_a, mask_ratio_a) == cfg.num_patches_a
                                         or num_kept(cfg.num_patches_v, mask_ratio_v) == cfg.num_patches_v):
            raise ValueError(f"mask ratios ({mask_ratio_a}, {mask_ratio_v}) leave a modality without masked "
                             "tokens: its MAE loss is undefined. Use forward_features for un-masked tokens.")
        enc = self.forward_encoder(audio, video, mask_ratio_a, mask_ratio_v, mask_mode, generator, noise_a,
                                   noise_v)
        zero = enc["latent"].new_zeros(())
        pred_a = pred_v = None
        loss_mae_a = loss_mae_v = loss_mae = zero
        if cfg.mae_loss_weight != 0:
            len_keep_a = enc["ids_keep_a"].shape[1]  # the reference: num_patches_a - mask_a[0].sum()
            pred_a, pred_v = self.forward_decoder(enc["latent"], enc["ids_restore_a"], enc["ids_restore_v"],
                                                  len_keep_a)
            target_a, target_v = self.targets(audio, video)
            loss_mae_a = mae_loss(pred_a, target_a, enc["mask_a"], cfg.norm_pix_loss)
            loss_mae_v = mae_loss(pred_v, target_v, enc["mask_v"], cfg.norm_pix_loss)
            loss_mae = cfg.mae_loss_weight * (loss_mae_a + loss_mae_v)
        # contrastive term in float32 with autocast off: in bf16 the logits cos / 0.05 are quantised to steps
        # of 0.125, which hides the small differences between clips early in training
        dev = enc["latent"].device.type
        logits = loss_c_unweighted = c_acc = loss_c = None
        with torch.autocast(dev, enabled=False) if dev in ("cpu", "cuda") else contextlib.nullcontext():
            pooled_a = self.forward_head(enc["latent_c_a"].float())  # [B, D], mean over visible tokens
            pooled_v = self.forward_head(enc["latent_c_v"].float())  # [B, D]
            if contrastive:
                logits = contrastive_logits(pooled_a, pooled_v, self.temperature)  # [B, B]
                loss_c_unweighted = info_nce(pooled_a, pooled_v, self.temperature, cfg.bidirectional_contrast)
                c_acc = contrastive_accuracy(pooled_a, pooled_v, cfg.bidirectional_contrast)
        if contrastive:
            loss_c = cfg.contrast_loss_weight * loss_c_unweighted if cfg.contrast_loss_weight != 0 else zero
        return CAVMAEOutput(loss=loss_mae + loss_c if contrastive else loss_mae, loss_mae=loss_mae,
                            loss_mae_a=loss_mae_a, loss_mae_v=loss_mae_v, loss_c=loss_c,
                            loss_c_unweighted=loss_c_unweighted, c_acc=c_acc, pred_a=pred_a, pred_v=pred_v,
                            pooled_a=pooled_a, pooled_v=pooled_v, contrast_logits=logits, **enc)


class CAVMAEFT(CAVMAEEncoder):
    """CAV-MAE classifier: the encoder (no masking, no decoder) + ``mlp_head`` (LayerNorm + Linear) on
    mean-pooled tokens: ``forward = forward_head(forward_features(audio, video, mode))``. Modes
    (:data:`FT_MODES`; inputs each needs: :data:`MODE_INPUTS`) and the tokens ``forward_features`` gives:

    * ``multimodal`` (audio + video): concat[audio, video] -> shared block (joint norms) -> ``norm``;
    * ``audioonly`` (audio): audio -> shared block (``_a`` norms) -> ``norm_a``;
    * ``videoonly`` (video): video -> shared block (``_v`` norms) -> ``norm_v``;
    * ``missingaudioonly`` (audio; an AV-fine-tuned model tested without video): the joint-norm path
      (+ ``norm``) and the ``_a`` path, averaged;
    * ``missingvideoonly`` (video): the same for video.
    """

    def __init__(self, cfg: CAVMAEConfig | None = None, num_classes: int = 527) -> None:
        cfg = cfg or CAVMAEConfig(tr_pos=True)
        super().__init__(cfg)
        self.num_classes = num_classes
        self.mlp_head = nn.Sequential(nn.LayerNorm(cfg.embed_dim, eps=cfg.ln_eps),
                                      nn.Linear(cfg.embed_dim, num_classes))
        self.init_weights()

    def reset_classifier(self, num_classes: int) -> None:
        """New final Linear for ``num_classes`` (xavier init, bias 0); the head's LayerNorm is kept."""
        old = self.mlp_head[1]
        head = nn.Linear(self.cfg.embed_dim, num_classes, device=old.weight.device, dtype=old.weight.dtype)
        nn.init.xavier_uniform_(head.weight)
        nn.init.zeros_(head.bias)
        self.mlp_head[1] = head
        self.num_classes = num_classes

    def get_classifier(self) -> nn.Module:
        """The head (LayerNorm + Linear) on the pooled tokens (timm contract)."""
        return self.mlp_head

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens ``[B, N, D]`` -> mean-pooled ``[B, D]`` (``pre_logits=True``) -> logits ``[B, K]``."""
        x = x.mean(dim=1)  # [B, D]
        return x if pre_logits else self.mlp_head(x)

    def forward(self, audio: torch.Tensor | None, video: torch.Tensor | None,
                mode: str = "multimodal") -> torch.Tensor:
        """Logits ``[B, K]`` (no sigmoid/softmax): ``forward_head(forward_features(audio, video, mode))``."""
        return self.forward_head(self.forward_features(audio, video, mode))

    def forward_multiframe(self, audio: torch.Tensor | None, frames: torch.Tensor | None,
                           mode: str = "multimodal", reduce: str | None = None) -> torch.Tensor:
        """Classify a clip from ``V`` frames ``[B, V, 3, H, W]``, sharing the audio branch.

        The audio goes through ``blocks_a`` once; the ``B*V`` frames go through ``blocks_v`` as one batch;
        only the shared block and head run per frame. The result equals ``V`` separate ``forward(audio,
        frames[:, i])`` calls (the reference's test-time frame aggregation) up to float rounding.

        Returns ``reduce=None``: per-frame logits ``[B, V, K]``; ``reduce="softmax"`` / ``"sigmoid"``: the
        mean over frames of the per-frame probabilities ``[B, K]`` (the reference: softmax for accuracy,
        sigmoid for mAP); ``reduce="mean"``: the mean logits ``[B, K]``.
        """
        if reduce not in (None, "softmax", "sigmoid", "mean"):
            raise ValueError(f"reduce must be None, 'softmax', 'sigmoid' or 'mean', got {reduce!r}.")
        if frames is not None and frames.ndim != 5:
            raise ValueError(f"frames must be [B, V, 3, H, W], got {list(frames.shape)}.")
        V = frames.shape[1] if frames is not None else 1
        if "video" not in mode_inputs(mode):  # the frames do not matter: one pass, repeated V times
            logits = self(audio, None, mode)[:, None].expand(-1, V, -1)  # [B, V, K]
        else:
            if frames is None:
                raise ValueError(f"mode {mode!r} needs frames [B, V, 3, H, W], got None.")
            B = frames.shape[0]
            flat = frames.flatten(0, 1)  # [B*V, 3, H, W], frames of clip b at rows b*V .. b*V+V-1
            a, v = self._encode(audio if mode == "multimodal" else None, flat, mode)  # v [B*V, Lv, D]
            if a is not None:
                a = a.repeat_interleave(V, dim=0)  # [B*V, La, D], clip b's audio for each of its frames
            logits = self.forward_head(self._shared(a, v, mode)).view(B, V, -1)  # [B*V, K] -> [B, V, K]
        if reduce is None:
            return logits
        if reduce == "softmax":
            return logits.softmax(dim=-1).mean(dim=1)  # [B, K]
        if reduce == "sigmoid":
            return logits.sigmoid().mean(dim=1)
        return logits.mean(dim=1)
