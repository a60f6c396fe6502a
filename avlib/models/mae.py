"""A masked autoencoder for one modality (He et al., *Masked Autoencoders Are Scalable Vision Learners*,
CVPR 2022), for log-mel spectrograms (as CAV-MAE's audio branch) or for frames.

It mirrors MAE's ``models_mae.py`` (``forward_encoder`` -> ``forward_decoder`` -> ``forward_loss``) and is
built from the same pieces as :class:`avlib.models.CAVMAE` (the same :class:`~avlib.blocks.Block`, masking
functions, sin-cos tables, patch order and loss), so CAV-MAE reads as "two of these, plus modality embeddings,
a shared block, one joint decoder and a contrastive loss". Data flow (the course's audio model:
L = 8 x 25 = 200 tokens, 75 % masked -> L' = 50, D = 192, Dd = 128, P = 16 * 16 = 256)::

    x [B,T,F] -> [B,1,F,T] -> patch_embed + pos_embed [B,L,D] -> mask [B,L',D] -> blocks -> norm -> latent
    latent -> decoder_embed [B,L',Dd] -> append mask tokens, unshuffle [B,L,Dd] -> + decoder_pos_embed
           -> decoder_blocks -> decoder_norm -> decoder_pred -> pred [B,L,P]
    loss = mean over the masked patches of mean over pixels of (pred - norm_pix(patchify(x)))^2

Differences from MAE: no cls token (CAV-MAE has none; features are mean-pooled), LayerNorm eps 1e-5 (as
CAV-MAE), masking through :mod:`avlib.masking` (explicit ``noise`` / ``generator``, structured audio modes),
named outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import PatchEmbed
from torch import nn

from avlib.blocks import Block, init_linear_and_norm, init_patch_kernel
from avlib.losses import mae_loss
from avlib.masking import MASK_MODES, mask_tokens
from avlib.models.config import CAVMAEConfig, ConfigBase
from avlib.patching import (
    audio_grid,
    audio_to_image,
    image_grid,
    patchify_audio,
    patchify_image,
    reconstruction_views,
    unnormalize_patches,
    unpatchify_audio,
    unpatchify_image,
)
from avlib.pos_embed import get_2d_sincos_pos_embed

__all__ = ["MAEConfig", "MAEOutput", "MAE", "MODALITIES", "add_mask_tokens", "unnormalize_patches"]

MODALITIES = ("audio", "image")


@dataclass
class MAEConfig(ConfigBase):
    """Everything that defines a single-modality MAE. Defaults: the course's tiny audio model on 4-s clips
    (the audio branch of ``tiny`` CAV-MAE, its shared block counted as a 6th layer).

    Shapes: audio ``[B, T=audio_length, F=num_mel_bins]``, tokens ``L = (F/p) * (T/p)`` (frequency rows x
    time columns); image ``[B, in_chans, img_size, img_size]``, ``L = (img_size/p)^2``.
    """

    modality: str = "audio"  # "audio" (fbank [B, T, F]) | "image" (frames [B, C, H, W])
    audio_length: int = 400  # T (multiple of patch_size)
    num_mel_bins: int = 128  # F
    img_size: int = 96  # H = W (modality "image")
    in_chans: int = 3  # image channels (modality "image"; audio has 1)
    patch_size: int = 16  # p
    embed_dim: int = 192  # D
    depth: int = 6
    num_heads: int = 3
    mlp_ratio: float = 4.0
    decoder_embed_dim: int = 128  # Dd
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    norm_pix_loss: bool = True  # per-patch standardised targets (unbiased variance), as MAE / CAV-MAE
    mask_mode: str = "unstructured"  # audio may also use "time" | "freq" | "tf" (avlib.masking)
    tr_pos: bool = False  # trainable positional tables (MAE / CAV-MAE pretraining: fixed sin-cos)
    ln_eps: float = 1e-5

    def __post_init__(self) -> None:
        need = self._need
        need(self.modality in MODALITIES, f"modality must be one of {MODALITIES}, got {self.modality!r}.")
        need(self.mask_mode in MASK_MODES, f"mask_mode must be one of {MASK_MODES}, got {self.mask_mode!r}.")
        need(self.modality == "audio" or self.mask_mode == "unstructured",
             f"mask_mode {self.mask_mode!r} is for spectrograms; images use 'unstructured'.")
        _ = self.grid  # raises if the input is not a multiple of the patch size
        self._check_widths()
        need(self.depth >= 1 and self.decoder_depth >= 1, "depth and decoder_depth must be >= 1.")

    # --- derived sizes ---------------------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        """Token grid ``(rows, cols)``: audio (F/p frequency rows, T/p time columns), image (H/p, W/p)."""
        if self.modality == "audio":
            return audio_grid(self.audio_length, self.num_mel_bins, self.patch_size)
        return image_grid(self.img_size, self.patch_size)

    @property
    def num_patches(self) -> int:
        """L, tokens before masking."""
        return self.grid[0] * self.grid[1]

    @property
    def channels(self) -> int:
        return 1 if self.modality == "audio" else self.in_chans

    @property
    def patch_dim(self) -> int:
        """P, values per patch (the reconstruction target of one token)."""
        return self.patch_size**2 * self.channels

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input (without the batch): ``(T, F)`` or ``(C, H, W)``."""
        if self.modality == "audio":
            return (self.audio_length, self.num_mel_bins)
        return (self.in_chans, self.img_size, self.img_size)

    @classmethod
    def from_cavmae(cls, cfg: CAVMAEConfig, modality: str = "audio", **overrides) -> MAEConfig:
        """The MAE with the sizes of one branch of a CAV-MAE config: its modality-specific layers plus its
        shared layer(s) as ``depth``, its encoder and decoder widths and inputs."""
        names = ("audio_length", "num_mel_bins", "img_size", "in_chans", "patch_size", "embed_dim", "depth",
                 "num_heads", "mlp_ratio", "decoder_embed_dim", "decoder_depth", "decoder_num_heads",
                 "norm_pix_loss", "tr_pos", "ln_eps")
        base = {n: getattr(cfg, n) for n in names}
        return cls(**{**base, "modality": modality, **overrides})


@dataclass
class MAEOutput:
    """What one :class:`MAE` forward computes."""

    loss: torch.Tensor  # 0-d: mean over the masked patches of the per-patch squared error
    pred: torch.Tensor  # [B, L, P] prediction of every patch (norm-pix units if norm_pix_loss)
    mask: torch.Tensor  # [B, L], 1 = masked, original token order
    ids_restore: torch.Tensor  # [B, L]
    ids_keep: torch.Tensor  # [B, L'] visible tokens, in encoder order
    latent: torch.Tensor  # [B, L', D] encoder output of the visible tokens


def add_mask_tokens(x: torch.Tensor, mask_token: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
    """Visible tokens ``[B, L', Dd]`` (encoder order) -> the full sequence ``[B, L, Dd]`` in the original
    token order, ``mask_token [1, 1, Dd]`` at every masked position (MAE's "append, then unshuffle")."""
    B, n_vis, Dd = x.shape
    L = ids_restore.shape[1]
    tokens = torch.cat([x, mask_token.expand(B, L - n_vis, Dd)], dim=1)  # [B, L, Dd], shuffled order
    return torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, Dd))  # [B, L, Dd], original


class MAE(nn.Module):
    """Masked autoencoder for one modality. ``forward(x, mask_ratio)`` returns an :class:`MAEOutput`.

    >>> model = MAE(MAEConfig(audio_length=96))                  # doctest: +SKIP
    >>> out = model(fbank, mask_ratio=0.75, generator=g)   # fbank [B, 96, 128]: 48 tokens, 12 visible
    >>> out.loss.backward()
    """

    def __init__(self, cfg: MAEConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or MAEConfig()
        D, Dd, L, p = cfg.embed_dim, cfg.decoder_embed_dim, cfg.num_patches, cfg.patch_size

        def block(dim: int, heads: int) -> Block:
            return Block(dim, heads, cfg.mlp_ratio, qkv_bias=True, ln_eps=cfg.ln_eps, modality_norms=False)

        # --- encoder (MAE's names; CAV-MAE's audio branch: patch_embed_a, blocks_a, ...) ----------
        img = (cfg.num_mel_bins, cfg.audio_length) if cfg.modality == "audio" else cfg.img_size
        self.patch_embed = PatchEmbed(img_size=img, patch_size=p, in_chans=cfg.channels, embed_dim=D)
        self.pos_embed = nn.Parameter(torch.zeros(1, L, D), requires_grad=cfg.tr_pos)
        self.blocks = nn.ModuleList([block(D, cfg.num_heads) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(D, eps=cfg.ln_eps)
        # --- decoder ----------------------------------------------------------------------------
        self.decoder_embed = nn.Linear(D, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, L, Dd), requires_grad=cfg.tr_pos)
        self.decoder_blocks = nn.ModuleList([block(Dd, cfg.decoder_num_heads)
                                             for _ in range(cfg.decoder_depth)])
        self.decoder_norm = nn.LayerNorm(Dd, eps=cfg.ln_eps)
        self.decoder_pred = nn.Linear(Dd, cfg.patch_dim)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """MAE's initialisation: fixed sin-cos tables, xavier Linear / patch kernels, N(0, 0.02) mask token.
        Uses torch's global RNG: seed it first (``avlib.env.setup``)."""
        c = self.cfg
        self.pos_embed.copy_(get_2d_sincos_pos_embed(c.embed_dim, *c.grid)[None])  # [1, L, D]
        self.decoder_pos_embed.copy_(get_2d_sincos_pos_embed(c.decoder_embed_dim, *c.grid)[None])  # [1,L,Dd]
        init_patch_kernel(self.patch_embed.proj)
        nn.init.normal_(self.mask_token, std=0.02)
        init_linear_and_norm(self)

    # --- inputs <-> patches --------------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        want = self.cfg.input_shape
        if x.ndim == len(want) + 1 and tuple(x.shape[1:]) == want:
            return
        hint = ""
        if self.cfg.modality == "audio" and x.ndim == 3 and tuple(x.shape[1:]) == want[::-1]:
            hint = " It looks frequency-major: pass x.transpose(1, 2)."
        elif self.cfg.modality == "audio" and x.ndim == 3 and x.shape[2] == want[1]:
            hint = (f" Pad or crop the fbank to T={want[0]} frames (avlib.audio.pad_or_crop), or build the "
                    f"model with MAEConfig(audio_length=...) a multiple of {self.cfg.patch_size}.")
        what = "a time-major fbank [B, T, F]" if self.cfg.modality == "audio" else "frames [B, C, H, W]"
        raise ValueError(f"MAE input must be {what} = [B, {', '.join(map(str, want))}], "
                         f"got {list(x.shape)}.{hint}")

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """Input -> reconstruction targets ``[B, L, P]`` (avlib's patch order, shared with CAV-MAE)."""
        p = self.cfg.patch_size
        return patchify_audio(x, p) if self.cfg.modality == "audio" else patchify_image(x, p)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`patchify`: ``[B, L, P]`` -> ``[B, T, F]`` (audio) or ``[B, C, H, W]``."""
        c = self.cfg
        if c.modality == "audio":
            return unpatchify_audio(patches, c.audio_length, c.num_mel_bins, c.patch_size)
        return unpatchify_image(patches, c.img_size, c.patch_size, c.in_chans)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Input -> tokens ``[B, L, D]`` (patch embedding + positional embedding)."""
        self._check_input(x)
        img = audio_to_image(x) if self.cfg.modality == "audio" else x  # audio: [B, T, F] -> [B, 1, F, T]
        return self.patch_embed(img) + self.pos_embed  # [B, L, D], tokens row-major over the grid

    # --- the three steps of models_mae.py --------------------------------------------------------------
    def forward_encoder(self, x: torch.Tensor, mask_ratio: float = 0.75,
                        generator: torch.Generator | None = None, noise: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embed, mask, encode the visible tokens. Returns ``(latent [B, L', D], mask [B, L],
        ids_restore [B, L], ids_keep [B, L'])``. Masking noise: ``noise [B, L]`` if given, else drawn from
        ``generator`` (else torch's global RNG)."""
        tokens = self.embed(x)  # [B, L, D]
        vis, mask, ids_restore, ids_keep = mask_tokens(tokens, mask_ratio, self.cfg.mask_mode, self.cfg.grid,
                                                       noise=noise, generator=generator)  # vis [B, L', D]
        for blk in self.blocks:
            vis = blk(vis)
        return self.norm(vis), mask, ids_restore, ids_keep

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, L', D]`` -> a prediction of every patch ``[B, L, P]`` (mask tokens fill the gaps)."""
        x = self.decoder_embed(latent)  # [B, L', Dd]
        x = add_mask_tokens(x, self.mask_token, ids_restore) + self.decoder_pos_embed  # [B, L, Dd]
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))  # [B, L, P]

    def forward_loss(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error on the masked patches (norm-pix targets if ``cfg.norm_pix_loss``)."""
        return mae_loss(pred, self.patchify(x), mask, self.cfg.norm_pix_loss)

    def forward(self, x: torch.Tensor, mask_ratio: float = 0.75, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None) -> MAEOutput:
        """One pretraining forward: input -> :class:`MAEOutput` (loss, pred, mask, ids, latent)."""
        latent, mask, ids_restore, ids_keep = self.forward_encoder(x, mask_ratio, generator, noise)
        pred = self.forward_decoder(latent, ids_restore)  # [B, L, P]
        loss = self.forward_loss(x, pred, mask)
        return MAEOutput(loss=loss, pred=pred, mask=mask, ids_restore=ids_restore, ids_keep=ids_keep,
                         latent=latent)

    # --- after training: the timm contract -----------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Un-masked, unpooled encoder tokens ``[B, L, D]`` (all tokens; differentiable)."""
        h = self.embed(x)  # [B, L, D]
        for blk in self.blocks:
            h = blk(h)
        return self.norm(h)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens ``[B, L, D]`` -> the mean-pooled embedding ``[B, D]`` (MAE has no classifier; a linear probe
        goes on this)."""
        return x.mean(dim=1)

    def no_weight_decay(self) -> set[str]:
        """Parameters kept out of weight decay (optimisers also exempt every 1-D parameter)."""
        return {"pos_embed", "decoder_pos_embed", "mask_token"}

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """timm's layer grouping: embeddings, then block i; the rest (norm, decoder) after them."""
        return dict(stem=r"^(?:patch_embed|pos_embed)", blocks=r"^blocks\.(\d+)")

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pictures of a reconstruction in the input layout (``[B, T, F]`` or ``[B, C, H, W]``): ``masked``
        the input with its masked patches set to NaN; ``recon`` the prediction of every patch (norm-pix
        predictions get the true patch's mean and std back); ``paste`` the reconstruction with the visible
        patches replaced by the input (:func:`avlib.patching.reconstruction_views`)."""
        views = reconstruction_views(self.patchify(x), pred, mask, self.cfg.norm_pix_loss)  # each [B, L, P]
        return {k: self.unpatchify(v) for k, v in views.items()}
