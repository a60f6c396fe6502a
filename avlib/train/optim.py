"""Optimiser and schedule: AdamW parameter groups (weight decay, layer-wise lr decay, head lr), the per-step
warm-up + cosine multiplier, and whether to run under bf16 autocast."""

from __future__ import annotations

import math
from typing import Any

import torch
from timm.models import group_parameters
from torch import nn

from avlib import env
from avlib.checkpoint import unwrap
from avlib.train.configs import FinetuneConfig, PretrainConfig

__all__ = ["layer_ids", "param_groups", "WarmupCosine", "optimizer_and_schedule", "resolve_amp"]


def layer_ids(model: nn.Module) -> dict[str, int]:
    """Depth of every parameter for layer-wise lr decay, from the model's timm ``group_matcher()``: for CAV-MAE
    embeddings 0, ``blocks_a.i`` / ``blocks_v.i`` i + 1, ``blocks_u.j`` ``depth_ms + 1 + j``, everything after
    the encoder (norms, head, decoder) ``depth + 1``."""
    m = unwrap(model)
    return group_parameters(m, m.group_matcher(coarse=False), reverse=True)


def param_groups(model: nn.Module, lr: float, weight_decay: float, layer_decay: float | None = None,
                 head_lr_mult: float = 1.0) -> list[dict]:
    """AdamW parameter groups from the model's timm contract: weight decay off for 1-D params (biases, norms)
    and ``model.no_weight_decay()`` (tokens, positional tables); lr scaled by ``layer_decay ** (depth + 1 -
    layer_id)`` (:func:`layer_ids`) and by ``head_lr_mult`` for ``model.get_classifier()`` (if it has one).
    Frozen parameters are left out. Each group holds ``lr_scale`` and a readable ``group`` name."""
    m = unwrap(model)
    skip = m.no_weight_decay()
    lids = layer_ids(m) if layer_decay else {}
    top = max(lids.values(), default=0)
    head = {id(p) for p in m.get_classifier().parameters()} if hasattr(m, "get_classifier") else set()
    groups: dict[tuple, dict] = {}
    for name, p in m.named_parameters():
        if not p.requires_grad:
            continue
        no_wd = p.ndim <= 1 or name in skip
        lid = lids.get(name, top)
        scale = layer_decay ** (top - lid) if layer_decay else 1.0
        is_head = id(p) in head
        if is_head:
            scale *= head_lr_mult
        key = (lid if layer_decay else 0, is_head, no_wd)
        if key not in groups:
            label = ("head" if is_head else (f"layer{lid}" if layer_decay else "body")) + \
                ("/no_wd" if no_wd else "")
            groups[key] = {"params": [], "lr": lr * scale, "lr_scale": scale,
                           "weight_decay": 0.0 if no_wd else weight_decay, "group": label}
        groups[key]["params"].append(p)
    return list(groups.values())


class WarmupCosine:
    """LR multiplier per optimizer step: linear warm-up from ``1/warmup`` to 1 over ``warmup`` steps, then a
    cosine from 1 to ``min_ratio`` at ``total`` steps (constant after). Use with ``LambdaLR``; a plain object,
    so the scheduler's ``state_dict`` holds its settings."""

    def __init__(self, warmup: int, total: int, min_ratio: float = 0.0) -> None:
        self.warmup, self.total, self.min_ratio = int(warmup), int(total), float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def optimizer_and_schedule(model: nn.Module, cfg: PretrainConfig | FinetuneConfig, total_steps: int,
                           warmup_steps: int, **group_kw: Any) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over :func:`param_groups` (``cfg.lr``, ``cfg.weight_decay``, ``cfg.betas``; ``group_kw``: e.g.
    ``layer_decay``, ``head_lr_mult``) and a per-step ``LambdaLR(WarmupCosine)`` down to ``cfg.min_lr``: what both
    training loops build before they resume."""
    opt = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.weight_decay, **group_kw), lr=cfg.lr, betas=cfg.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(warmup_steps, total_steps, cfg.min_lr / cfg.lr))
    return opt, sched

def resolve_amp(amp: bool | None, device: torch.device) -> bool:
    """bf16 autocast on? ``None`` = on for CUDA and for CPUs with native bf16 (``env.cpu_supports_bf16``)."""
    if amp is not None:
        return bool(amp)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and env.cpu_supports_bf16()
