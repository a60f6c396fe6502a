"""Metrics against hand-computed values, scikit-learn, and a brute-force retrieval loop."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from avlib import metrics as M

# 3 classes, 6 samples: true = [0, 0, 1, 1, 2, 2], pred = [0, 1, 1, 1, 2, 0]
TRUE = torch.tensor([0, 0, 1, 1, 2, 2])
PRED = torch.tensor([0, 1, 1, 1, 2, 0])
SCORES = torch.nn.functional.one_hot(PRED, 3).float() * 5 + 0.1


def test_accuracy_hand_value():
    assert M.accuracy(SCORES, TRUE) == pytest.approx(4 / 6)
    # soft / one-hot targets give the same answer (argmax)
    assert M.accuracy(SCORES, torch.nn.functional.one_hot(TRUE, 3) * 0.9 + 0.05) == pytest.approx(4 / 6)


def test_confusion_and_per_class_hand_values():
    cm = M.confusion_matrix(SCORES, TRUE)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]  # rows = true, columns = predicted
    assert M.per_class_accuracy(SCORES, TRUE).tolist() == pytest.approx([0.5, 1.0, 0.5])


def test_macro_f1_hand_value_and_sklearn():
    # F1 per class: c0 tp1 fp1 fn1 -> 0.5; c1 tp2 fp1 fn0 -> 0.8; c2 tp1 fp0 fn1 -> 2/3
    expected = (0.5 + 0.8 + 2 / 3) / 3
    assert M.macro_f1(SCORES, TRUE) == pytest.approx(expected)
    assert M.macro_f1(SCORES, TRUE) == pytest.approx(f1_score(TRUE, PRED, average="macro"))


def test_per_class_accuracy_absent_class_is_nan():
    pca = M.per_class_accuracy(torch.tensor([0, 1]), torch.tensor([0, 0]), num_classes=3)
    assert pca[0] == 0.5 and math.isnan(pca[1]) and math.isnan(pca[2])


def test_accuracy_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="predictions"):
        M.accuracy(SCORES, TRUE[:4])


def test_average_precision_hand_value():
    # ranking by score: + - + -  -> AP = (1/1 + 2/3) / 2
    ap = M.average_precision(torch.tensor([0.9, 0.8, 0.7, 0.1]), torch.tensor([1, 0, 1, 0]))
    assert float(ap[0]) == pytest.approx((1 + 2 / 3) / 2)


def test_map_auc_match_sklearn_with_ties():
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(40, 5, generator=g) > 0.6).long()
    y[0] = 1  # every class has a positive
    y[1] = 0  # and a negative
    s = torch.randint(0, 6, (40, 5), generator=g).float()  # many ties
    ref_ap = [average_precision_score(y[:, k], s[:, k]) for k in range(5)]
    ref_auc = [roc_auc_score(y[:, k], s[:, k]) for k in range(5)]
    assert M.average_precision(s, y).tolist() == pytest.approx(ref_ap)
    assert M.roc_auc(s, y).tolist() == pytest.approx(ref_auc)
    out = M.multilabel_metrics(s, y)
    assert out["mAP"] == pytest.approx(np.mean(ref_ap))
    assert out["mAUC"] == pytest.approx(np.mean(ref_auc))


def test_d_prime():
    assert M.d_prime(0.5) == pytest.approx(0.0)
    assert M.d_prime(0.9) == pytest.approx(math.sqrt(2) * 1.2815515655446004)


def test_classification_metrics_names():
    out = M.classification_metrics(SCORES, TRUE, ["a", "b", "c"])
    assert out["per_class_accuracy"] == pytest.approx({"a": 0.5, "b": 1.0, "c": 0.5})
    assert out["confusion"][2] == [1, 0, 1]


# ----------------------------------------------------------------------------------------------------------
# retrieval
# ----------------------------------------------------------------------------------------------------------
def _brute_force(a: np.ndarray, v: np.ndarray) -> dict:
    """The reference's way: a Python loop over queries, sort each row, find the partner's position."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    out = {}
    for name, (q, items) in {"a2v": (a, v), "v2a": (v, a)}.items():
        ranks = []
        for i in range(len(q)):
            sims = [float(q[i] @ items[j]) for j in range(len(items))]
            order = sorted(range(len(items)), key=lambda j: -sims[j])
            ranks.append(order.index(i) + 1)
        ranks = np.array(ranks)
        out[name] = {"R@1": np.mean(ranks <= 1), "R@5": np.mean(ranks <= 5), "R@10": np.mean(ranks <= 10),
                     "MedR": float(np.median(ranks)), "MeanR": float(np.mean(ranks))}
    return out


def test_retrieval_matches_brute_force_loop():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(37, 16, generator=g)
    v = a + 1.5 * torch.randn(37, 16, generator=g)  # correlated partners: a spread of ranks
    got = M.retrieval_metrics(a, v)
    ref = _brute_force(a.double().numpy(), v.double().numpy())
    for d in ("a2v", "v2a"):
        assert got[d] == pytest.approx(ref[d])
    assert 0 < got["a2v"]["R@1"] < 1  # the test data is neither trivial nor hopeless


def test_retrieval_hand_value():
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.7, 0.0], [0.5, 0.6, 0.4]])
    assert M.retrieval_ranks(sim).tolist() == [1, 2, 3]
    assert M.retrieval_ranks(sim.T).tolist() == [1, 1, 1]


def test_retrieval_needs_square():
    with pytest.raises(ValueError, match="square"):
        M.retrieval_ranks(torch.zeros(3, 4))


def test_top_confusions():
    cm = torch.tensor([[5, 2, 0], [3, 4, 3], [0, 1, 6]])
    assert M.top_confusions(cm, ["a", "b", "c"], k=3) == [("b", "a", 3), ("b", "c", 3), ("a", "b", 2)]
    assert M.top_confusions(torch.eye(3, dtype=torch.long) * 4) == []  # no mistakes, nothing to list
    assert M.top_confusions(cm, k=10)[-1] == ("2", "1", 1)  # zero counts are left out


def test_accuracy_noise_is_two_binomial_standard_errors():
    from avlib.metrics import accuracy_noise

    assert accuracy_noise(50.0, 100) == pytest.approx(10.0)  # 2 * sqrt(.25 / 100) = 0.1
    assert accuracy_noise(50.0, 400) == pytest.approx(5.0)
    assert accuracy_noise(100.0, 100) == accuracy_noise(99.0, 100) > 0  # a perfect score still has a band
    assert accuracy_noise(50.0, 100, z=1) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="positive number of clips"):
        accuracy_noise(50.0, 0)
