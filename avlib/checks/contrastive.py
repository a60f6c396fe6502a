"""Self-checks for notebook 08 (audio <-> video contrastive learning), with targeted hints.

* :func:`symmetric_info_nce` - ``fn(a [B, D], v [B, D], temperature=0.05) -> 0-d loss`` against
  :func:`avlib.losses.info_nce` with ``bidirectional=True``.

Each prints one ✅ / ❌ (with a hint naming the likely mistake) / ⏭ line and returns True only on success.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from avlib.checks import FAIL, OK, first_hint, run, scalar
from avlib.losses import info_nce

__all__ = ["symmetric_info_nce"]


def _example(B: int = 6, D: int = 8, seed: int = 0, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed audio / video embeddings ``[B, D]``, partly aligned, with norms far from 1 (so a missing L2
    normalisation shows) and a different norm per row."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(B, D, generator=g)
    v = 0.6 * a + 0.8 * torch.randn(B, D, generator=g)  # clip i's video resembles clip i's audio
    rows = torch.linspace(1.0, 2.0, B)[:, None]  # [B, 1]
    return scale * rows * a, scale * rows.flip(0) * v


def _one_way(logits: torch.Tensor, dim: int) -> torch.Tensor:
    return -torch.diag(F.log_softmax(logits, dim=dim)).mean()


def _hint(got: torch.Tensor, a: torch.Tensor, v: torch.Tensor, t: float) -> str:
    """Name the mistake that most likely produced the value ``got``."""
    an, vn = F.normalize(a, dim=-1), F.normalize(v, dim=-1)
    S = an @ vn.T  # [B, B] cosine similarities, rows = audio
    logits = S / t
    B = S.shape[0]
    both = lambda L: (_one_way(L, 0) + _one_way(L, 1)) / 2  # noqa: E731
    candidates = [
        (_one_way(logits, 0), "that is one direction only - each video (column) normalised over the audios, "
                              "log_softmax(S, dim=0), which is CAV-MAE's default. Average it with the other "
                              "direction, dim=1."),
        (_one_way(logits, 1), "that is one direction only - each audio (row) normalised over the videos, "
                              "log_softmax(S, dim=1). Average it with the columns' direction, dim=0."),
        (_one_way(logits, 0) + _one_way(logits, 1),
         "you added the two directions; the symmetric loss is their mean: (loss_a2v + loss_v2a) / 2."),
        (both((a @ v.T) / t), "L2-normalise the embeddings first (F.normalize(x, dim=-1)): the similarity is "
                              "the cosine, not the raw dot product."),
        (both((F.normalize(a, dim=0) @ F.normalize(v, dim=0).T) / t),
         "normalise each embedding (a row, dim=-1), not each feature across the batch (dim=0)."),
        (both(S), "divide the cosine similarities by the temperature: logits = S / temperature."),
        (both(S * t), "divide by the temperature, do not multiply: logits = S / temperature."),
        (-both(logits), "the loss is the *negative* mean log-probability of the true pairs (mind the sign)."),
        (-(torch.diag(F.softmax(logits, 0)).mean() + torch.diag(F.softmax(logits, 1)).mean()) / 2,
         "take the log of the probabilities: log_softmax, not softmax."),
        (both(logits) * B, "average over the B pairs of the batch (.mean()), do not sum."),
    ]
    default = ("compute S = normalize(a) @ normalize(v).T / temperature, then the mean of "
                "-diag(log_softmax(S, dim=0)) and -diag(log_softmax(S, dim=1)), averaged.")
    return first_hint(got, candidates, default)


def symmetric_info_nce(fn: Callable[..., torch.Tensor]) -> bool:
    """Check ``fn(a [B, D], v [B, D], temperature) -> 0-d`` against ``info_nce(..., bidirectional=True)`` on
    fixed examples (two batch sizes, two temperatures, un-normalised inputs)."""
    name = "symmetric_info_nce"
    cases = [(_example(), 0.05), (_example(), 0.5), (_example(B=4, D=5, seed=1, scale=0.5), 0.1)]
    for (a, v), t in cases:
        ran, got = run(name, fn, a.clone(), v.clone(), temperature=t)
        if not ran:
            return False
        got = scalar(name, got, "the mean over the batch of each direction's loss, then the mean of the two "
                                "directions.")
        if got is None:
            return False
        expected = info_nce(a, v, t, bidirectional=True)
        if not torch.allclose(got.double(), expected.double(), atol=1e-5, rtol=1e-5):
            print(f"{FAIL} {name}(temperature={t}) = {got.item():.4f}, expected {expected.item():.4f}. "
                  f"Hint: {_hint(got, a, v, t)}")
            return False
    print(f"{OK} {name} matches avlib.losses.info_nce(bidirectional=True) (two batch sizes, two temperatures)")
    return True
