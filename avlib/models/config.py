"""Model configuration: the :class:`CAVMAEConfig` dataclass and the named sizes ``tiny``, ``small``, ``base``.

The config is saved with every checkpoint (``config.json`` next to ``model.safetensors``), so a model can
always be rebuilt exactly. Named sizes (``create_model(name, **overrides)`` in :mod:`avlib.models`):

======  =====  =====  =============  ===================  ======================  ===========================
name    D      heads  layers (N+M)   decoder (D x L x h)  input (T x F, frame)    use
======  =====  =====  =============  ===================  ======================  ===========================
tiny    192    3      5 + 1          128 x 2 x 4          256 x 64, 96 px         the course on 2 CPU cores
small   384    6      11 + 1         256 x 4 x 8          1024 x 128, 224 px      a single small GPU
base    768    12     11 + 1         512 x 8 x 16         1024 x 128, 224 px      = CAV-MAE (Gong et al. 2023)
======  =====  =====  =============  ===================  ======================  ===========================

``tiny`` keeps CAV-MAE's structure (modality-specific stacks, one shared block with three LayerNorm sets,
joint decoder) at ViT-Tiny width with 5 instead of 11 modality-specific layers: the course's data (a few
hundred synthetic clips) does not need more depth, and on the course's former inputs (200 audio + 36 video tokens) it
makes a pretraining step about 1.5x and a fine-tuning step about 2.5x cheaper than 11 + 1 layers (measured on
one CPU thread: 62 vs 92 and 98 vs 248 ms/sample at batch 32, fp32). The course profile now feeds it 64 mel
bins x 2.56 s (64 audio tokens + 36 video tokens), which makes every step about 2.5x cheaper again.
``base`` is the reference exactly: 191,036,160 parameters with ``unused_norms=True`` (the reference's layout;
by default avlib leaves out the 167,936 never-used LayerNorm values, see :mod:`avlib.blocks`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

from avlib.blocks import STEMS
from avlib.patching import audio_grid, image_grid

__all__ = ["ConfigBase", "CAVMAEConfig", "MODEL_CONFIGS", "model_names", "get_config"]


class ConfigBase:
    """What the model configs (dataclasses) share: ``to_dict`` / ``from_dict`` / ``replace`` that refuse unknown
    fields, and the checks of the encoder / decoder widths (``__post_init__`` calls :meth:`_check_widths`)."""

    def _need(self, ok: bool, msg: str) -> None:
        if not ok:
            raise ValueError(f"{type(self).__name__}: {msg}")

    def _check_widths(self) -> None:
        for name in ("embed_dim", "decoder_embed_dim"):
            self._need(getattr(self, name) % 4 == 0, f"{name}={getattr(self, name)} must be a multiple of 4 "
                       "(2-D sin-cos positions).")
        self._need(self.embed_dim % self.num_heads == 0,
                   f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}.")
        self._need(self.decoder_embed_dim % self.decoder_num_heads == 0,
                   f"decoder_embed_dim={self.decoder_embed_dim} is not divisible by decoder_num_heads="
                   f"{self.decoder_num_heads}.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        """Build from a dict (e.g. a checkpoint's ``config.json``); unknown keys raise instead of being ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(known)}.")
        return cls(**d)

    def replace(self, **changes):
        """A copy with ``changes`` applied (validated)."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"unknown {type(self).__name__} fields {unknown}.")
        return dataclasses.replace(self, **changes)


@dataclass
class CAVMAEConfig(ConfigBase):
    """Everything that defines a CAV-MAE model. Defaults are the reference's (= ``base``).

    Shapes: audio input ``[B, T=audio_length, F=num_mel_bins]``; frames ``[B, in_chans, img_size, img_size]``;
    audio tokens ``La = (F/p) * (T/p)`` (frequency rows x time columns), video tokens ``Lv = (img_size/p)^2``.
    """

    # --- inputs ---------------------------------------------------------------------------------------------
    img_size: int = 224  # H = W of the frames
    audio_length: int = 1024  # T, fbank frames (multiple of patch_size)
    num_mel_bins: int = 128  # F (multiple of patch_size; the reference hard-wires 128)
    patch_size: int = 16  # p, square non-overlapping patches for both modalities
    stem: str = "linear"  # pixels -> tokens: "linear" (the reference's p x p kernel) or "conv" (early convs)
    in_chans: int = 3
    # --- encoder --------------------------------------------------------------------------------------------
    embed_dim: int = 768  # D
    modality_specific_depth: int = 11  # N layers in blocks_a and in blocks_v
    shared_depth: int = 1  # M layers in blocks_u (the reference fixes N + M = 12)
    num_heads: int = 12
    mlp_ratio: float = 4.0
    # --- decoder (pretraining only) -------------------------------------------------------------------------
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    # --- details that must match the reference for parity ---------------------------------------------------
    norm_pix_loss: bool = True  # per-patch standardised targets (unbiased variance)
    tr_pos: bool = False  # trainable positional tables (the reference: False to pretrain, True to fine-tune)
    ln_eps: float = 1e-5  # every LayerNorm (the reference uses nn.LayerNorm's default)
    unused_norms: bool = False  # keep the reference's never-used _a/_v LayerNorms in blocks_a/_v and decoder
    fused_attn: bool = True  # F.scaled_dot_product_attention (else the reference's explicit attention maths)
    # --- losses ---------------------------------------------------------------------------------------------
    contrast_temperature: float = 0.05  # InfoNCE temperature (initial value if learnable)
    learnable_temperature: bool = False
    bidirectional_contrast: bool = False  # the reference: one direction (video columns over audios)
    mae_loss_weight: float = 1.0
    contrast_loss_weight: float = 0.01

    def __post_init__(self) -> None:
        audio_grid(self.audio_length, self.num_mel_bins, self.patch_size)  # raises if not divisible
        image_grid(self.img_size, self.patch_size)
        self._need(self.stem in STEMS, f"stem must be one of {STEMS}, got {self.stem!r}.")
        self._check_widths()
        self._need(self.modality_specific_depth >= 0 and self.shared_depth >= 1,
                   "modality_specific_depth must be >= 0 and shared_depth >= 1.")
        self._need(self.contrast_temperature > 0, "contrast_temperature must be > 0.")

    # --- derived sizes --------------------------------------------------------------------------------------
    @property
    def audio_grid(self) -> tuple[int, int]:
        """``(rows, cols)`` = (frequency rows F/p, time columns T/p)."""
        return audio_grid(self.audio_length, self.num_mel_bins, self.patch_size)

    @property
    def video_grid(self) -> tuple[int, int]:
        return image_grid(self.img_size, self.patch_size)

    @property
    def num_patches_a(self) -> int:
        return self.audio_grid[0] * self.audio_grid[1]

    @property
    def num_patches_v(self) -> int:
        return self.video_grid[0] * self.video_grid[1]

    @property
    def depth(self) -> int:
        return self.modality_specific_depth + self.shared_depth



MODEL_CONFIGS: dict[str, CAVMAEConfig] = {
    "tiny": CAVMAEConfig(img_size=96, audio_length=400, embed_dim=192, modality_specific_depth=5, num_heads=3,
                         decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4),
    "small": CAVMAEConfig(embed_dim=384, num_heads=6, decoder_embed_dim=256, decoder_depth=4,
                          decoder_num_heads=8),
    "base": CAVMAEConfig(),
}


def model_names() -> list[str]:
    """Names accepted by ``create_model``."""
    return list(MODEL_CONFIGS)


def get_config(name: str, **overrides) -> CAVMAEConfig:
    """The named config with ``overrides`` applied (e.g. ``get_config('tiny', audio_length=96,
    img_size=64)``)."""
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; choose one of {model_names()}.")
    return MODEL_CONFIGS[name].replace(**overrides)
