"""CAV-MAE's two losses: the masked-patch reconstruction (MAE) loss and the audio-visual InfoNCE loss.

Reference conventions (kept exactly):

* ``norm_pix``: each target patch is standardised with its own mean and **unbiased** variance,
  ``(x - mean) / sqrt(var + 1e-6)``.
* MAE loss: squared error averaged over the pixels of a patch, then averaged over the **masked** patches of
  the whole batch (visible patches do not count).
* InfoNCE: ``S = normalize(a) @ normalize(v).T / temperature`` (rows = audio, columns = video, temperature
  0.05). The reference's default is **one direction**: ``-mean(diag(log_softmax(S, dim=0)))``, i.e. every
  video column is normalised over the audios of the batch. ``bidirectional=True`` averages it with the other
  direction.
* Contrastive accuracy: the fraction of columns (videos) whose best-matching row (audio) is their own clip
  (bidirectional: averaged with the row-wise accuracy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["normalize_patches", "mae_loss", "contrastive_logits", "info_nce", "contrastive_accuracy"]


def normalize_patches(target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-patch standardisation of ``[B, L, P]`` with the unbiased variance (the ``norm_pix_loss``
    target)."""
    mean = target.mean(dim=-1, keepdim=True)  # [B, L, 1]
    var = target.var(dim=-1, keepdim=True)  # [B, L, 1], unbiased (as the reference)
    return (target - mean) / (var + eps) ** 0.5


def mae_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
             norm_pix: bool = True) -> torch.Tensor:
    """Mean squared error on the masked patches: ``pred, target [B, L, P]``, ``mask [B, L]`` (1 = masked)."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {list(pred.shape)} and target {list(target.shape)} must have the same shape.")
    if norm_pix:
        target = normalize_patches(target)
    loss = ((pred - target) ** 2).mean(dim=-1)  # [B, L], mean over the pixels of each patch
    return (loss * mask).sum() / mask.sum()  # mean over the masked patches of the batch


def contrastive_logits(a: torch.Tensor, v: torch.Tensor,
                       temperature: float | torch.Tensor = 0.05) -> torch.Tensor:
    """Cosine-similarity logits ``[B, B]``: ``S[i, j] = cos(a_i, v_j) / temperature`` for ``a, v [B, D]``."""
    a = F.normalize(a, dim=-1)
    v = F.normalize(v, dim=-1)
    return torch.mm(a, v.transpose(0, 1)) / temperature  # [B, B], rows = audio, columns = video


def _diag_nce(logits: torch.Tensor, dim: int) -> torch.Tensor:
    return -torch.mean(torch.diag(F.log_softmax(logits, dim=dim)))


def info_nce(a: torch.Tensor, v: torch.Tensor, temperature: float | torch.Tensor = 0.05,
             bidirectional: bool = False) -> torch.Tensor:
    """InfoNCE between pooled audio ``a [B, D]`` and video ``v [B, D]`` (single direction = the reference)."""
    logits = contrastive_logits(a, v, temperature)  # [B, B]
    if not bidirectional:
        return _diag_nce(logits, dim=0)  # each video column normalised over the audios
    return (_diag_nce(logits, dim=0) + _diag_nce(logits, dim=1)) / 2


def contrastive_accuracy(a: torch.Tensor, v: torch.Tensor, bidirectional: bool = False) -> torch.Tensor:
    """Top-1 in-batch retrieval accuracy (float scalar): how often a clip's own partner scores highest."""
    logits = contrastive_logits(a, v, 1.0)  # [B, B]; the temperature does not change the argmax
    target = torch.arange(logits.shape[0], device=logits.device)
    acc = (logits.argmax(dim=0) == target).float().mean()  # per video column, best audio row
    if bidirectional:
        acc = (acc + (logits.argmax(dim=1) == target).float().mean()) / 2
    return acc
