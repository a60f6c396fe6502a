"""Self-checks of notebook 11 (``avlib.checks.retrieval``): right answers pass, typical mistakes get their hint."""

import numpy as np
import pytest
import torch

from avlib import checks, metrics


def _partner(sim):
    return sim.diagonal()[:, None]  # [N, 1] each query's score for its own item


def good(sim, k):
    ranks = (sim > _partner(sim)).sum(dim=1) + 1  # 1-based: 1 + items scored strictly higher
    return (ranks <= k).float().mean().item()


def good_zero_based(sim, k):
    position = (sim > _partner(sim)).sum(dim=1)  # 0 = best
    return float((position < k).double().mean())


def good_tensor(sim, k):
    return ((sim > _partner(sim)).sum(dim=1) < k).float().mean()  # a 0-d tensor is fine


def good_numpy(sim, k):
    s = sim.numpy()
    return float(np.mean((s > np.diag(s)[:, None]).sum(1) + 1 <= k))


def columns(sim, k):
    return good(sim.T, k)


def lenient(sim, k):
    position = (sim > _partner(sim)).sum(dim=1)
    return (position <= k).float().mean().item()


def strict(sim, k):
    ranks = (sim > _partner(sim)).sum(dim=1) + 1
    return (ranks < k).float().mean().item()


def ignores_k(sim, k):
    return (sim.argmax(dim=1) == torch.arange(len(sim))).float().mean().item()


def percent(sim, k):
    return 100 * good(sim, k)


def count(sim, k):
    ranks = (sim > _partner(sim)).sum(dim=1) + 1
    return int((ranks <= k).sum())


def ties_against(sim, k):
    ranks = (sim >= _partner(sim)).sum(dim=1)
    return (ranks <= k).float().mean().item()


def sorted_by_index(sim, k):
    order = torch.argsort(sim, dim=1, descending=True, stable=True)  # [N, N] items, best first
    return (order[:, :k] == torch.arange(len(sim))[:, None]).any(dim=1).float().mean().item()


def per_query(sim, k):
    return (sim > _partner(sim)).sum(dim=1) < k  # [N] hits, not averaged


def crash(sim, k):
    return sim.topk(k + 100, dim=1)  # k out of range


@pytest.mark.parametrize("fn", [good, good_zero_based, good_tensor, good_numpy,
                                lambda sim, k: metrics.recall_at_k(metrics.retrieval_ranks(sim), k)])
def test_right_versions_pass(fn, run_check):
    run_check.passes(checks.retrieval.recall_at_k, fn)


@pytest.mark.parametrize("fn, needle", [
    (columns, "ranked the columns"),
    (lenient, "too lenient"),
    (strict, "too strict"),
    (ignores_k, "does not change with k"),
    (percent, "not a percentage"),
    (count, "not the count"),
    (ties_against, "not >="),
    (sorted_by_index, "breaks ties by index"),
    (per_query, "return one number"),
])
def test_wrong_versions_get_their_hint(fn, needle, run_check):
    run_check.fails(checks.retrieval.recall_at_k, fn, hint=needle)


def test_ties_broken_some_other_way_get_the_tie_hint(capsys):
    def reversed_ties(sim, k):  # sorts with ties broken by the *highest* index first
        flipped = sim.flip(1)
        order = (len(sim) - 1) - torch.argsort(flipped, dim=1, descending=True, stable=True)
        return (order[:, :k] == torch.arange(len(sim))[:, None]).any(dim=1).float().mean().item()

    assert checks.retrieval.recall_at_k(reversed_ties) is False
    out = capsys.readouterr().out
    assert out.startswith("❌") and "wrong with ties" in out, out


def test_skipped_and_crashing(run_check):
    run_check.skips(checks.retrieval.recall_at_k)
    run_check.fails(checks.retrieval.recall_at_k, crash, hint="raised RuntimeError")
