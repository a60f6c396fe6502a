"""Metrics: classification (accuracy, macro-F1, confusion matrix, mAP / AUC) and cross-modal retrieval.

Everything is vectorised torch; inputs may be tensors or numpy arrays. Conventions:

* ``scores`` are logits or probabilities ``[N, K]`` (only their order per row matters for accuracy);
* ``targets`` are class indices ``[N]`` or (soft / multi-hot) label vectors ``[N, K]`` (argmax is the class);
* the confusion matrix has true classes in rows and predicted classes in columns.

Retrieval follows the reference (``src/retrieval.py``): cosine similarity of L2-normalised embeddings;
the true partner of query ``i`` is item ``i``; the rank of a query is 1 + the number of items scored
strictly higher than its partner (ties count in the query's favour); R@k = share of queries with
rank <= k; MedR = median rank.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "accuracy_noise",
    "as_tensor", "class_indices", "accuracy", "confusion_matrix", "per_class_accuracy", "macro_f1",
    "top_confusions", "average_precision", "mean_average_precision", "roc_auc", "mean_auc", "d_prime",
    "classification_metrics", "multilabel_metrics", "similarity", "retrieval_ranks", "recall_at_k",
    "retrieval_metrics",
]


def as_tensor(x: Any) -> torch.Tensor:
    """A CPU tensor from a tensor, numpy array or list (floats become float64 for exact metric sums)."""
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.double() if t.is_floating_point() else t


def class_indices(y: Any) -> torch.Tensor:
    """Class indices ``[N]`` from indices ``[N]`` or label vectors / scores ``[N, K]`` (argmax)."""
    t = as_tensor(y)
    if t.ndim == 2:
        return t.argmax(dim=1)
    if t.ndim != 1:
        raise ValueError(f"expected class indices [N] or label vectors [N, K], got shape {tuple(t.shape)}")
    return t.long()


def accuracy(scores: Any, targets: Any) -> float:
    """Top-1 accuracy in [0, 1]: share of rows whose argmax score is the target class."""
    pred, true = class_indices(scores), class_indices(targets)
    if pred.shape != true.shape:
        raise ValueError(f"scores give {pred.numel()} predictions but targets give {true.numel()} labels")
    return float((pred == true).double().mean()) if len(pred) else float("nan")


def accuracy_noise(accuracy: float, n: int, z: float = 2.0) -> float:
    """The noise band of an accuracy (%) measured on ``n`` clips, in points: ``z`` binomial standard errors
    (about 95 % for ``z=2``). A difference between two models on the same clips that is smaller than this is
    not evidence. The accuracy is clamped to [1, 99] % so that a perfect or zero score still gets a band."""
    if n <= 0:
        raise ValueError(f"n must be a positive number of clips, got {n}.")
    p = min(max(accuracy, 1.0), 99.0) / 100
    return 100 * z * math.sqrt(p * (1 - p) / n)


def confusion_matrix(scores: Any, targets: Any, num_classes: int | None = None) -> torch.Tensor:
    """Confusion counts ``[K, K]`` (row = true class, column = predicted class), via one ``bincount``."""
    pred, true = class_indices(scores), class_indices(targets)
    if num_classes is None:
        s = as_tensor(scores)
        num_classes = s.shape[1] if s.ndim == 2 else int(max(pred.max(), true.max())) + 1
    K = num_classes
    return torch.bincount(true * K + pred, minlength=K * K).reshape(K, K)  # [K*K] -> [K, K]


def per_class_accuracy(scores: Any, targets: Any, num_classes: int | None = None) -> torch.Tensor:
    """Accuracy of each true class (= recall) ``[K]``; NaN for classes absent from ``targets``."""
    cm = confusion_matrix(scores, targets, num_classes).double()
    return cm.diagonal() / cm.sum(dim=1)  # 0/0 -> nan for absent classes


def macro_f1(scores: Any, targets: Any, num_classes: int | None = None) -> float:
    """Unweighted mean over classes of F1 = 2·TP / (2·TP + FP + FN); classes never seen nor predicted are
    skipped (like scikit-learn's ``f1_score(average='macro', labels=<present>)``)."""
    cm = confusion_matrix(scores, targets, num_classes).double()
    tp = cm.diagonal()
    denom = cm.sum(dim=0) + cm.sum(dim=1)  # (TP + FP) + (TP + FN)
    present = denom > 0
    return float((2 * tp[present] / denom[present]).mean())


def top_confusions(cm: Any, class_names: list[str] | None = None, k: int = 5) -> list[tuple[str, str, int]]:
    """The ``k`` most frequent mistakes of a confusion matrix ``[K, K]`` (row = true, column = predicted):
    ``(true name, predicted name, count)``, most frequent first (ties: row-major order); zero counts left out."""
    m = as_tensor(cm).clone()
    m.fill_diagonal_(0)
    names = class_names or [str(i) for i in range(len(m))]
    flat = m.flatten()
    order = torch.argsort(-flat, stable=True)[:k]  # stable: ties keep row-major order
    K = m.shape[1]
    return [(names[int(i) // K], names[int(i) % K], int(flat[i])) for i in order if flat[i] > 0]


def _per_class(score_fn, scores: Any, targets: Any, need_negatives: bool) -> torch.Tensor:
    """``score_fn(y_true, y_score)`` (scikit-learn) on each column ``[K]`` of binary targets ``[N, K]``; NaN for
    a class with no positive (or, if ``need_negatives``, no negative)."""
    s, y = as_tensor(scores).double(), as_tensor(targets) > 0.5
    if s.ndim == 1:
        s, y = s[:, None], y[:, None]
    s, y = s.cpu().numpy(), y.cpu().numpy()
    out = [float(score_fn(y[:, k], s[:, k])) if y[:, k].any() and (not need_negatives or not y[:, k].all())
           else float("nan") for k in range(s.shape[1])]
    return torch.tensor(out, dtype=torch.float64)


def average_precision(scores: Any, targets: Any) -> torch.Tensor:
    """Average precision of each column ``[K]`` (binary targets ``[N, K]``): scikit-learn's
    ``average_precision_score`` (step-wise, ties grouped); NaN for a class with no positive."""
    from sklearn.metrics import average_precision_score

    return _per_class(average_precision_score, scores, targets, need_negatives=False)


def mean_average_precision(scores: Any, targets: Any) -> float:
    """mAP: mean of :func:`average_precision` over classes with at least one positive."""
    ap = average_precision(scores, targets)
    return float(ap[~ap.isnan()].mean())


def roc_auc(scores: Any, targets: Any) -> torch.Tensor:
    """ROC AUC of each column ``[K]``: scikit-learn's ``roc_auc_score`` (ties count half); NaN where a class has
    no positive or no negative."""
    from sklearn.metrics import roc_auc_score

    return _per_class(roc_auc_score, scores, targets, need_negatives=True)


def mean_auc(scores: Any, targets: Any) -> float:
    """Mean ROC AUC over classes that have positives and negatives."""
    auc = roc_auc(scores, targets)
    return float(auc[~auc.isnan()].mean())


def d_prime(auc: float) -> float:
    """d' = sqrt(2) · Φ⁻¹(AUC), the sensitivity index reported next to mAP by AudioSet papers."""
    return math.sqrt(2.0) * float(torch.special.ndtri(torch.tensor(auc, dtype=torch.float64)))


def classification_metrics(scores: Any, targets: Any, class_names: list[str] | None = None) -> dict[str, Any]:
    """Single-label summary: ``accuracy``, ``macro_f1``, ``per_class_accuracy`` (dict name -> value) and
    ``confusion`` (``[K, K]`` list of lists)."""
    s = as_tensor(scores)
    K = s.shape[1] if s.ndim == 2 else (len(class_names) if class_names else None)
    names = class_names or [str(k) for k in range(K or 0)]
    cm = confusion_matrix(s, targets, K)
    pca = per_class_accuracy(s, targets, K)
    return {
        "accuracy": accuracy(s, targets),
        "macro_f1": macro_f1(s, targets, K),
        "per_class_accuracy": {n: float(v) for n, v in zip(names, pca, strict=True)},
        "confusion": cm.tolist(),
    }


def multilabel_metrics(scores: Any, targets: Any) -> dict[str, float]:
    """Multi-label summary as the reference reports it: ``mAP``, ``mAUC`` and ``d_prime``."""
    auc = mean_auc(scores, targets)
    return {"mAP": mean_average_precision(scores, targets), "mAUC": auc, "d_prime": d_prime(auc)}


# ----------------------------------------------------------------------------------------------------------
# retrieval
# ----------------------------------------------------------------------------------------------------------
def similarity(a: Any, v: Any) -> torch.Tensor:
    """Cosine similarity ``[N, M]`` of audio embeddings ``a [N, D]`` and video embeddings ``v [M, D]``."""
    a, v = as_tensor(a).float(), as_tensor(v).float()
    return F.normalize(a, dim=-1) @ F.normalize(v, dim=-1).T  # [N, D] @ [D, M] -> [N, M]


def retrieval_ranks(sim: Any) -> torch.Tensor:
    """1-based rank of the true partner (the diagonal) in each row of a query x item similarity ``[N, N]``."""
    s = as_tensor(sim)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"retrieval needs a square similarity [N, N] (item i is query i's partner), got "
                         f"{tuple(s.shape)}")
    return (s > s.diagonal()[:, None]).sum(dim=1) + 1  # [N, N] > [N, 1] -> [N]


def recall_at_k(ranks: torch.Tensor, k: int) -> float:
    """Share of queries whose partner is within the top ``k``."""
    return float((ranks <= k).double().mean())


def retrieval_metrics(a: Any, v: Any, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, dict[str, float]]:
    """Audio->video and video->audio retrieval: ``{"a2v": {"R@1", "R@5", "R@10", "MedR", "MeanR"}, "v2a"}``.

    ``a [N, D]`` and ``v [N, D]`` are paired clip embeddings (row i of both comes from clip i). R@k in [0, 1].
    """
    sim = similarity(a, v)  # [N, N], rows = audio queries
    out = {}
    for name, s in (("a2v", sim), ("v2a", sim.T)):
        ranks = retrieval_ranks(s)
        row = {f"R@{k}": recall_at_k(ranks, k) for k in ks}
        row["MedR"] = float(np.median(ranks.numpy()))  # numpy's median, as the reference
        row["MeanR"] = float(ranks.double().mean())
        out[name] = row
    return out
