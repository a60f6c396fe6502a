"""Weight conversion: official CAV-MAE checkpoints <-> avlib, pretraining -> fine-tuning, ImageNet MAE ->
CAV-MAE.

* :func:`from_cavmae` maps an official ``CAVMAE`` / ``CAVMAEFT`` state dict (with or without DataParallel's
  ``module.`` prefix) onto avlib's key layout, **strictly**: a missing or unknown key raises an error listing
  them. The keys are the same except the never-used LayerNorms the reference keeps in every block
  (``norm{1,2}_{a,v}`` of ``blocks_a``, ``blocks_v`` and ``decoder_blocks``: 167,936 values at base size,
  135,168 in the classifier), which are dropped unless ``keep_unused_norms=True`` (then load into a model
  built with ``unused_norms=True``).
* :func:`load_cavmae` = read the file, infer the config, build the avlib model, load strictly (one call).
* :func:`to_cavmae` exports an avlib model in the reference's layout (for the official scripts).
* :func:`cavmae_to_finetune` turns a pretrained :class:`CAVMAE` into a :class:`CAVMAEFT` (decoder dropped, new
  head).
* :func:`from_mae_vit` initialises a :class:`CAVMAE` from an ImageNet MAE / timm ViT state dict with the
  reference's recipe (``adapt_vmae_weights.py``): ViT blocks ``0..N-1`` to both modality stacks, the rest to
  the shared block(s) (their norms copied into the ``_a`` / ``_v`` sets), ``norm`` to ``norm``, ``norm_a``,
  ``norm_v``; the RGB patch kernel summed over channels for audio; the cls row dropped from the positional
  table; the MAE decoder (if present) copied, with ``decoder_pred_a`` = the first ``p*p`` rows of MAE's
  ``decoder_pred``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from avlib.models import CAVMAE, CAVMAEFT, CAVMAEConfig
from avlib.pos_embed import adapt_pos_embed

__all__ = [
    "from_cavmae", "infer_cavmae_config", "load_cavmae", "to_cavmae", "cavmae_to_finetune", "from_mae_vit",
    "unused_norm_keys", "strip_prefix", "ConversionError",
]

_BLOCK_PARTS = ("norm1", "norm1_a", "norm1_v", "attn.qkv", "attn.proj", "norm2", "norm2_a", "norm2_v",
                "mlp.fc1", "mlp.fc2")
_UNUSED_NORMS = ("norm1_a", "norm1_v", "norm2_a", "norm2_v")
_ENCODER_TOP = ("modality_a", "modality_v", "pos_embed_a", "pos_embed_v", "patch_embed_a.proj.weight",
                "patch_embed_a.proj.bias", "patch_embed_v.proj.weight", "patch_embed_v.proj.bias",
                "norm_a.weight", "norm_a.bias", "norm_v.weight", "norm_v.bias", "norm.weight", "norm.bias")
_DECODER_TOP = ("mask_token", "decoder_modality_a", "decoder_modality_v", "decoder_pos_embed_a",
                "decoder_pos_embed_v", "decoder_embed.weight", "decoder_embed.bias", "decoder_norm.weight",
                "decoder_norm.bias", "decoder_pred_a.weight", "decoder_pred_a.bias", "decoder_pred_v.weight",
                "decoder_pred_v.bias")
_HEAD_TOP = ("mlp_head.0.weight", "mlp_head.0.bias", "mlp_head.1.weight", "mlp_head.1.bias")


class ConversionError(ValueError):
    """A state dict does not have the expected key layout (the message lists the offending keys)."""


def _listing(keys, limit: int = 20) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key if *all* keys carry it (DataParallel checkpoints); mixed keys
    raise."""
    has = [k.startswith(prefix) for k in sd]
    if all(has) and has:
        return {k[len(prefix):]: v for k, v in sd.items()}
    if any(has):
        with_prefix = [k for k in sd if k.startswith(prefix)]
        raise ConversionError(f"only some keys start with {prefix!r}: {_listing(with_prefix)}")
    return dict(sd)


def _unwrap(obj) -> dict[str, torch.Tensor]:
    """Accept a state dict or a checkpoint dict holding one under 'model' / 'state_dict'."""
    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                return dict(obj[key])
        raise ConversionError(f"not a state dict: top-level keys {_listing(obj.keys())}")
    return dict(obj)


def _load_file(source) -> dict[str, torch.Tensor]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} not found.")
        return _unwrap(torch.load(path, map_location="cpu", weights_only=True))
    return _unwrap(source)


def _block_indices(sd: Mapping[str, torch.Tensor], stack: str) -> list[int]:
    pat = re.compile(rf"^{stack}\.(\d+)\.")
    return sorted({int(m.group(1)) for k in sd if (m := pat.match(k))})


def _kind(sd: Mapping[str, torch.Tensor]) -> str:
    pre = "decoder_embed.weight" in sd or "mask_token" in sd
    ft = any(k.startswith("mlp_head.") for k in sd)
    if pre and ft:
        raise ConversionError("the state dict has both decoder and mlp_head keys; it is neither CAVMAE nor "
                              "CAVMAEFT.")
    if not pre and not ft:
        if "modality_a" not in sd:
            raise ConversionError("not a CAV-MAE state dict: no 'modality_a' key (keys: "
                                  f"{_listing(sd.keys(), 8)}).")
        raise ConversionError("CAV-MAE state dict without decoder or mlp_head keys (an audio-only "
                              "CAVMAEFTAudio?) is not supported.")
    return "pretrain" if pre else "finetune"


def _reference_keys(kind: str, n_ms: int, n_sh: int, n_dec: int) -> list[str]:
    """Every key of the reference model of this kind and depth (in no particular order)."""
    keys = list(_ENCODER_TOP)
    stacks = [("blocks_a", n_ms), ("blocks_v", n_ms), ("blocks_u", n_sh)]
    if kind == "pretrain":
        keys += _DECODER_TOP
        stacks.append(("decoder_blocks", n_dec))
    else:
        keys += _HEAD_TOP
    for stack, n in stacks:
        keys += [f"{stack}.{i}.{part}.{wb}" for i in range(n) for part in _BLOCK_PARTS
                 for wb in ("weight", "bias")]
    return keys


def unused_norm_keys(keys) -> list[str]:
    """The keys of never-used LayerNorms (``norm{1,2}_{a,v}`` outside ``blocks_u``) among ``keys``."""
    pat = re.compile(r"^(blocks_a|blocks_v|decoder_blocks)\.\d+\.(norm1_a|norm1_v|norm2_a|norm2_v)\.")
    return [k for k in keys if pat.match(k)]


def from_cavmae(sd: Mapping[str, torch.Tensor], keep_unused_norms: bool = False) -> dict[str, torch.Tensor]:
    """Official CAV-MAE state dict (``module.`` prefix optional) -> avlib state dict, checked strictly.

    Raises :class:`ConversionError` listing missing and unknown keys. The result loads with ``strict=True``
    into the avlib model of the same config (``unused_norms=keep_unused_norms``); see :func:`load_cavmae`.
    """
    sd = strip_prefix(_unwrap(sd))
    kind = _kind(sd)
    n_ms, n_sh, n_dec = (len(_block_indices(sd, s)) for s in ("blocks_a", "blocks_u", "decoder_blocks"))
    expected = set(_reference_keys(kind, n_ms, n_sh, n_dec))
    missing, unknown = expected - set(sd), set(sd) - expected
    if missing or unknown:
        raise ConversionError(f"not the official CAV-MAE {kind} layout:"
                              + (f"\n  missing keys ({len(missing)}): {_listing(missing)}" if missing else "")
                              + (f"\n  unknown keys ({len(unknown)}): {_listing(unknown)}" if unknown else "")
                              )
    n_a, n_v = len(_block_indices(sd, "blocks_a")), len(_block_indices(sd, "blocks_v"))
    if n_a != n_v:
        raise ConversionError(f"blocks_a has {n_a} blocks but blocks_v has {n_v}.")
    drop = set() if keep_unused_norms else set(unused_norm_keys(sd))
    return {k: v for k, v in sd.items() if k not in drop}


def infer_cavmae_config(sd: Mapping[str, torch.Tensor], num_heads: int | None = None,
                        decoder_num_heads: int | None = None, num_mel_bins: int = 128,
                        **overrides) -> tuple[CAVMAEConfig, int | None]:
    """``(config, num_classes or None)`` of an official or avlib CAV-MAE state dict.

    Head counts are not visible in the weights: they default to the reference's (12 for width 768, 16 for a
    512-wide decoder) and must be given for other widths. ``num_mel_bins`` is the reference's 128 unless
    given. ``tr_pos`` defaults to False for a pretraining and True for a fine-tuning checkpoint.
    """
    sd = strip_prefix(_unwrap(sd))
    kind = _kind(sd)
    D = sd["modality_a"].shape[-1]
    p = sd["patch_embed_a.proj.weight"].shape[-1]
    rows = num_mel_bins // p
    La, Lv = sd["pos_embed_a"].shape[1], sd["pos_embed_v"].shape[1]
    side = int(round(Lv ** 0.5))
    if La % rows or side * side != Lv:
        raise ConversionError(f"cannot infer the grids: {La} audio tokens for {rows} frequency rows, "
                              f"{Lv} video tokens (not a square).")

    def heads(width: int, given: int | None, ref_width: int, ref_heads: int, name: str) -> int:
        if given is not None:
            return given
        if width == ref_width:
            return ref_heads
        raise ConversionError(f"width {width} is not the reference's {ref_width}: pass {name}=... (head "
                              "counts are not stored in the weights).")

    cfg = dict(img_size=side * p, audio_length=La // rows * p, num_mel_bins=num_mel_bins, patch_size=p,
               in_chans=sd["patch_embed_v.proj.weight"].shape[1], embed_dim=D,
               modality_specific_depth=len(_block_indices(sd, "blocks_a")),
               shared_depth=len(_block_indices(sd, "blocks_u")),
               num_heads=heads(D, num_heads, 768, 12, "num_heads"),
               mlp_ratio=sd["blocks_u.0.mlp.fc1.weight"].shape[0] / D, tr_pos=kind == "finetune",
               unused_norms=bool(unused_norm_keys(sd)))
    num_classes = None
    if kind == "pretrain":
        Dd = sd["decoder_embed.weight"].shape[0]
        cfg.update(decoder_embed_dim=Dd, decoder_depth=len(_block_indices(sd, "decoder_blocks")),
                   decoder_num_heads=heads(Dd, decoder_num_heads, 512, 16, "decoder_num_heads"))
    else:
        num_classes = sd["mlp_head.1.weight"].shape[0]
    cfg.update(overrides)
    return CAVMAEConfig(**cfg), num_classes


def _adapt_grids(sd: dict[str, torch.Tensor], model: CAVMAE | CAVMAEFT, src_cfg: CAVMAEConfig,
                 pos_mode: str) -> dict[str, torch.Tensor]:
    """Fit positional tables of ``sd`` (made for ``src_cfg``) to ``model``'s grids: fixed tables are
    recomputed (sin-cos), trainable ones adapted with ``pos_mode`` (see
    :func:`avlib.pos_embed.adapt_pos_embed`)."""
    cfg = model.cfg
    params = dict(model.named_parameters())
    for key, old, new in (("pos_embed_a", src_cfg.audio_grid, cfg.audio_grid),
                          ("pos_embed_v", src_cfg.video_grid, cfg.video_grid),
                          ("decoder_pos_embed_a", src_cfg.audio_grid, cfg.audio_grid),
                          ("decoder_pos_embed_v", src_cfg.video_grid, cfg.video_grid)):
        if key in sd and key in params and old != new:
            mode = pos_mode if params[key].requires_grad else "sincos"
            sd[key] = adapt_pos_embed(sd[key], old, new, mode=mode)
    return sd


def load_cavmae(source, cfg: CAVMAEConfig | None = None, *, num_classes: int | None = None,
                keep_unused_norms: bool = False, pos_mode: str = "trim", num_heads: int | None = None,
                decoder_num_heads: int | None = None, **overrides) -> CAVMAE | CAVMAEFT:
    """Official CAV-MAE checkpoint (path or state dict) -> avlib model in ``eval()``, loaded strictly.

    Without ``cfg`` the config is inferred (:func:`infer_cavmae_config`; ``overrides`` apply). A ``cfg`` with
    another clip length or image size than the checkpoint adapts the positional tables (``pos_mode``: 'trim'
    keeps the first time columns, as the CAV-MAE author advises for shorter clips; 'pad', 'interpolate' also
    work).
    """
    raw = strip_prefix(_load_file(source))
    src_cfg, src_classes = infer_cavmae_config(raw, num_heads=num_heads, decoder_num_heads=decoder_num_heads,
                                               num_mel_bins=overrides.pop("num_mel_bins", 128),
                                               unused_norms=keep_unused_norms)
    sd = from_cavmae(raw, keep_unused_norms=keep_unused_norms)
    cfg = (cfg or src_cfg).replace(unused_norms=keep_unused_norms, **overrides)
    if src_classes is None:
        model = CAVMAE(cfg)
    else:
        model = CAVMAEFT(cfg, num_classes=src_classes if num_classes is None else num_classes)
        if num_classes is not None and num_classes != src_classes:
            raise ConversionError(f"the checkpoint's head has {src_classes} classes, not {num_classes}; "
                                  "load it as is and call model.reset_classifier(num_classes).")
    sd = _adapt_grids(sd, model, src_cfg, pos_mode)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def to_cavmae(model: CAVMAE | CAVMAEFT, prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Export an avlib model in the official layout (``prefix`` 'module.' as the official loaders expect).

    The never-used LayerNorms the reference carries are added as (weight 1, bias 0) when the model has none.
    """
    cfg = model.cfg
    if cfg.stem != "linear":
        raise ConversionError(f"this model uses stem={cfg.stem!r}; the official layout holds only the linear patch "
                              "embedding (one p x p kernel), so it cannot be exported. Export a stem='linear' model.")
    sd = {k: v.detach().clone() for k, v in model.state_dict().items() if k != "logit_scale"}
    stacks = [("blocks_a", cfg.modality_specific_depth), ("blocks_v", cfg.modality_specific_depth)]
    if isinstance(model, CAVMAE):
        stacks.append(("decoder_blocks", cfg.decoder_depth))
    for stack, n in stacks:
        for i in range(n):
            w = sd[f"{stack}.{i}.norm1.weight"]
            for norm in _UNUSED_NORMS:
                sd.setdefault(f"{stack}.{i}.{norm}.weight", torch.ones_like(w))
                sd.setdefault(f"{stack}.{i}.{norm}.bias", torch.zeros_like(w))
    from_cavmae(sd)  # self-check: the export has exactly the official layout
    return {prefix + k: v for k, v in sd.items()}


def cavmae_to_finetune(model: CAVMAE, num_classes: int, tr_pos: bool = True) -> CAVMAEFT:
    """Pretrained :class:`CAVMAE` -> :class:`CAVMAEFT`: encoder copied, decoder dropped, fresh ``mlp_head``.

    Unlike the reference (``strict=False``, printing the mismatches) the key sets are checked: only decoder
    keys may be dropped and only ``mlp_head`` keys may be new. Positional tables become trainable
    (``tr_pos=True``).
    """
    if not isinstance(model, CAVMAE):
        raise TypeError(f"cavmae_to_finetune expects a CAVMAE, got {type(model).__name__}.")
    ft = CAVMAEFT(model.cfg.replace(tr_pos=tr_pos), num_classes=num_classes)
    ft = ft.to(next(model.parameters()).device)
    src, dst = model.state_dict(), ft.state_dict()
    new = {k for k in dst if k.startswith("mlp_head.")}
    missing = set(dst) - set(src) - new
    dropped = set(src) - set(dst)
    bad_drop = {k for k in dropped if not (k.startswith("decoder_") or k in ("mask_token", "logit_scale"))}
    if missing or bad_drop:
        raise ConversionError(f"unexpected layout: missing {_listing(missing)}; not a decoder key "
                              f"{_listing(bad_drop)}")
    ft.load_state_dict({k: (dst[k] if k in new else src[k]) for k in dst}, strict=True)
    return ft


def from_mae_vit(vit_sd: Mapping[str, torch.Tensor], cfg: CAVMAEConfig | None = None,
                 model: CAVMAE | None = None) -> CAVMAE:
    """ImageNet MAE (``{'model': sd}`` or a plain sd) or timm ViT weights -> initialised :class:`CAVMAE`.

    ``model`` (or a fresh ``CAVMAE(cfg)``) provides what the ViT lacks: the modality embeddings, the audio
    sin-cos tables and, if the ViT has no MAE decoder, the decoder. Every ViT key must be used or be one of
    the known extras (``cls_token``, classifier ``head.*``); otherwise :class:`ConversionError` lists them.
    """
    vit = strip_prefix(_unwrap(vit_sd))
    model = model if model is not None else CAVMAE(cfg or CAVMAEConfig())
    cfg = model.cfg
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in vit:
            raise ConversionError(f"the ViT state dict has no {key!r} (keys: {_listing(vit.keys(), 12)}).")
        used.add(key)
        return vit[key]

    def table(key: str, grid: tuple[int, int], n_own: int) -> torch.Tensor:
        pe = take(key)  # [1, (1+)N, D]
        n = pe.shape[1]
        side = int(round((n - 1) ** 0.5))
        if side * side == n - 1:
            pe = pe[:, 1:]  # drop the cls row -> [1, N, D]
        else:
            side = int(round(n ** 0.5))
        if (side, side) != grid:
            pe = adapt_pos_embed(pe, (side, side), grid, mode="interpolate")
        return pe

    depth = len(_block_indices(vit, "blocks"))
    if depth != cfg.depth:
        raise ConversionError(f"the ViT has {depth} blocks but the config needs {cfg.depth} "
                              f"({cfg.modality_specific_depth} modality-specific + {cfg.shared_depth} "
                              "shared).")
    if take("patch_embed.proj.weight").shape[-1] != cfg.patch_size:
        raise ConversionError(f"patch size {vit['patch_embed.proj.weight'].shape[-1]} != config "
                              f"{cfg.patch_size}.")

    def copy_block(src: str, dst: str, prefix: str = "blocks") -> None:
        for name in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            for wb in ("weight", "bias"):
                t = take(f"{prefix}.{src}.{name}.{wb}")
                targets = [name]
                if name.startswith("norm"):
                    targets += [f"{name}_a", f"{name}_v"]  # duplicated into the per-modality sets
                for tgt in targets:
                    if f"{dst}.{tgt}.{wb}" in own:
                        out[f"{dst}.{tgt}.{wb}"] = t

    for i in range(cfg.modality_specific_depth):
        copy_block(str(i), f"blocks_a.{i}")
        copy_block(str(i), f"blocks_v.{i}")
    for j in range(cfg.shared_depth):
        copy_block(str(cfg.modality_specific_depth + j), f"blocks_u.{j}")
    w = take("patch_embed.proj.weight")  # [D, 3, p, p]
    out["patch_embed_v.proj.weight"] = w
    out["patch_embed_v.proj.bias"] = take("patch_embed.proj.bias")
    out["patch_embed_a.proj.weight"] = w.sum(dim=1, keepdim=True)  # [D, 1, p, p], RGB kernel summed
    out["patch_embed_a.proj.bias"] = vit["patch_embed.proj.bias"]
    norm_key = "norm" if "norm.weight" in vit else "fc_norm"
    for wb in ("weight", "bias"):
        t = take(f"{norm_key}.{wb}")
        for tgt in ("norm", "norm_a", "norm_v"):
            out[f"{tgt}.{wb}"] = t
    out["pos_embed_v"] = table("pos_embed", cfg.video_grid, cfg.num_patches_v)
    used.add("cls_token")

    if "decoder_embed.weight" in vit:  # an MAE pretraining checkpoint: copy its decoder
        n_dec = len(_block_indices(vit, "decoder_blocks"))
        if n_dec != cfg.decoder_depth:
            raise ConversionError(f"the MAE decoder has {n_dec} blocks but the config needs "
                                  f"{cfg.decoder_depth}.")
        for i in range(n_dec):
            copy_block(str(i), f"decoder_blocks.{i}", prefix="decoder_blocks")
        for name in ("decoder_embed", "decoder_norm"):
            for wb in ("weight", "bias"):
                out[f"{name}.{wb}"] = take(f"{name}.{wb}")
        out["mask_token"] = take("mask_token")
        pw, pb = take("decoder_pred.weight"), take("decoder_pred.bias")  # [p*p*3, Dd]
        n_a = cfg.patch_size ** 2
        out["decoder_pred_v.weight"], out["decoder_pred_v.bias"] = pw, pb
        out["decoder_pred_a.weight"] = pw[:n_a]  # the reference's choice: the first p*p output rows
        out["decoder_pred_a.bias"] = pb[:n_a]
        out["decoder_pos_embed_v"] = table("decoder_pos_embed", cfg.video_grid, cfg.num_patches_v)
    unknown = {k for k in vit if k not in used and not k.startswith("head.")}
    if unknown:
        raise ConversionError(f"ViT keys with no place in CAV-MAE: {_listing(unknown)}")
    bad = {k: (tuple(v.shape), tuple(own[k].shape)) for k, v in out.items() if v.shape != own[k].shape}
    if bad:
        raise ConversionError(f"shape mismatches (ViT vs config): {bad}")
    own.update({k: v.to(own[k].dtype) for k, v in out.items()})
    model.load_state_dict(own, strict=True)
    return model
