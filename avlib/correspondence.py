"""Is there an audio-visual correspondence in the data that a model could learn and carry to new clips?

CAV-MAE's contrastive half can only learn what the pairs hold. Two measurements on the simple baselines'
hand-made features (:func:`avlib.data.report.audio_features` / ``video_features``), each in seconds, bound what
retrieval can reach on a split of held-out clips:

* :func:`linear_contrastive`: two linear maps trained with symmetric InfoNCE on the training pairs (no labels).
  Its in-batch accuracy on the training clips says whether the pairs can be told apart there; its held-out
  retrieval says whether what it learnt transfers.
* :func:`class_match_retrieval`: ranks clips by how well the audio and video *classifiers* (the baselines, fit on
  the labels) agree on the instrument, ``sim[i, j] = sum_k p_audio(k | i) p_video(k | j)``. It knows nothing
  about a clip beyond its instrument, so it is what class-level alignment alone gives retrieval.

Both report R@5 in % next to chance (``5 / N``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from avlib import metrics as M
from avlib.data.report import fit_classifier, split_features

__all__ = ["linear_contrastive", "class_match_retrieval", "correspondence_report"]


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[torch.Tensor]:
    mu, sd = train.mean(0), train.std(0) + 1e-6  # [D] each, from the training clips only
    return [torch.from_numpy((x - mu) / sd).float() for x in (train, *others)]


def _r5(a: torch.Tensor, v: torch.Tensor) -> dict[str, float]:
    r = M.retrieval_metrics(a, v)
    return {"a2v": 100 * r["a2v"]["R@5"], "v2a": 100 * r["v2a"]["R@5"]}


def linear_contrastive(train: dict[str, Any], test: dict[str, Any], steps: int = 2000, batch_size: int = 32,
                       dim: int = 64, temperature: float = 0.1, lr: float = 1e-3, seed: int = 0) -> dict[str, Any]:
    """Train ``W_a``, ``W_v`` (linear, to ``dim``) with symmetric InfoNCE on ``train``'s pairs (from
    :func:`avlib.data.report.split_features`); return ``{"train_acc": in-batch top-1 (%) over the last 10 % of
    steps, "chance_acc": 100 / batch, "r5": {"a2v", "v2a"} on test (%), "chance_r5": 500 / N}``."""
    g = torch.Generator().manual_seed(seed)
    xa, ta = _standardise(train["audio"], test["audio"])  # [N, Da], [M, Da]
    xv, tv = _standardise(train["video"], test["video"])  # [N, Dv], [M, Dv]
    wa = torch.nn.Linear(xa.shape[1], dim)
    wv = torch.nn.Linear(xv.shape[1], dim)
    with torch.no_grad():  # initialise from the generator, not torch's global RNG
        for w in (wa, wv):
            w.weight.normal_(0, w.in_features ** -0.5, generator=g)
            w.bias.zero_()
    opt = torch.optim.AdamW([*wa.parameters(), *wv.parameters()], lr=lr, weight_decay=1e-2)
    target = torch.arange(batch_size)
    accs = []
    for _ in range(steps):
        idx = torch.randint(len(xa), (batch_size,), generator=g)  # [B]
        a, v = F.normalize(wa(xa[idx]), dim=-1), F.normalize(wv(xv[idx]), dim=-1)  # [B, dim] each
        logits = v @ a.T / temperature  # [B, B], rows = videos
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        accs.append((logits.argmax(1) == target).float().mean().item())
    tail = accs[-max(1, steps // 10):]
    with torch.no_grad():
        r5 = _r5(wa(ta), wv(tv))
    return {"train_acc": 100 * sum(tail) / len(tail), "chance_acc": 100 / batch_size, "r5": r5,
            "chance_r5": 500 / len(ta)}


def class_match_retrieval(train: dict[str, Any], test: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Retrieval from class posteriors alone: the baselines' logistic regressions (fit on ``train``'s labels)
    give ``p_audio [M, K]`` and ``p_video [M, K]`` on ``test``; ``sim = p_audio @ p_video.T``. Returns
    ``{"r5": {"a2v", "v2a"} (%), "chance_r5", "audio_acc", "video_acc"}`` (accuracies of the two classifiers
    on test, %)."""
    probs, accs = {}, {}
    for kind in ("audio", "video"):
        model = fit_classifier(train[kind], train["labels"], seed)
        p = model.predict_proba(test[kind])  # [M, K'] over the classes seen in training
        full = np.zeros((len(p), int(max(train["labels"].max(), test["labels"].max())) + 1))
        full[:, model.classes_] = p  # [M, K]
        probs[kind], accs[kind] = full, 100 * float(np.mean(full.argmax(1) == test["labels"]))
    pa, pv = torch.from_numpy(probs["audio"]).float(), torch.from_numpy(probs["video"]).float()
    r = M.retrieval_ranks(pa @ pv.T)  # [M] ranks of the true video per audio query
    r_t = M.retrieval_ranks(pv @ pa.T)  # [M]
    return {"r5": {"a2v": 100 * M.recall_at_k(r, 5), "v2a": 100 * M.recall_at_k(r_t, 5)},
            "chance_r5": 500 / len(pa), "audio_acc": accs["audio"], "video_acc": accs["video"]}


def correspondence_report(root: str | Path, train_split: str = "train", test_split: str = "test",
                          steps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Both measurements on ``root`` (a generated dataset): ``{"linear": ..., "class_match": ..., "n_test"}``."""
    train, test = split_features(root, train_split), split_features(root, test_split)
    return {"linear": linear_contrastive(train, test, steps=steps, seed=seed),
            "class_match": class_match_retrieval(train, test, seed=seed), "n_test": len(test["labels"])}
