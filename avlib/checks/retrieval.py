"""Self-checks for notebook 11 (what did pretraining learn?), with targeted hints.

* :func:`recall_at_k` - ``fn(sim [N, N], k) -> share of queries whose partner is in the top k`` against
  :func:`avlib.metrics.retrieval_ranks` + :func:`avlib.metrics.recall_at_k` (rows = queries, the partner of
  query ``i`` is item ``i``, rank = 1 + the number of items scored strictly higher, so ties count in the
  query's favour).

Each prints one ✅ / ❌ (with a hint naming the likely mistake) / ⏭ line and returns True only on success.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from avlib import metrics as M
from avlib.checks import FAIL, OK, run

__all__ = ["recall_at_k"]


def _reference(sim: torch.Tensor, k: int) -> float:
    return M.recall_at_k(M.retrieval_ranks(sim), k)


def _cases() -> list[tuple[torch.Tensor, int, bool]]:
    """``(sim, k, has_ties)``: a matrix without ties (rows and columns give different answers) at several k,
    and one with ties right at the partners' scores."""
    g = torch.Generator().manual_seed(0)
    N = 12
    sim = torch.randn(N, N, generator=g) + 1.2 * torch.eye(N)  # partners score a little higher on average
    tied = torch.tensor([[0.5, 0.5, 0.9, 0.1, 0.5, 0.1],  # row 0: one item above, two tied with the partner
                         [0.5, 0.5, 0.1, 0.1, 0.1, 0.1],  # row 1: tied with an item of lower index
                         [0.7, 0.7, 0.7, 0.1, 0.1, 0.1],  # row 2: three-way tie, partner last
                         [0.9, 0.2, 0.2, 0.2, 0.2, 0.9],  # row 3: two above, partner tied with two more
                         [0.1, 0.1, 0.1, 0.1, 0.3, 0.2],  # row 4: partner alone on top
                         [0.8, 0.4, 0.4, 0.4, 0.4, 0.4]])  # row 5: one above, four-way tie
    return [(sim, 1, False), (sim, 3, False), (sim, 5, False), (sim, N, False), (tied, 1, True),
            (tied, 2, True)]


def _ranks_ties_against(sim: torch.Tensor) -> torch.Tensor:
    return (sim >= sim.diagonal()[:, None]).sum(1)  # partner and every tied item count as better or equal


def _ranks_by_index(sim: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(sim, dim=1, descending=True, stable=True)  # ties: lower index first
    return (order == torch.arange(len(sim))[:, None]).float().argmax(1) + 1


# (what the mistake computes, its hint, whether it is about ties - then only the tied case tells it apart)
_MISTAKES: list[tuple[Callable[[torch.Tensor, int], float], str, bool]] = [
    (lambda s, k: _reference(s.T, k),
     "you ranked the columns: sim[i] (row i) holds query i's scores for every item, so rank within each row "
     "(dim=1), or pass sim.T for the other direction.", False),
    (lambda s, k: _reference(s, k + 1),
     "off by one, too lenient: ranks start at 1 (the best item has rank 1), so a query counts if rank <= k; "
     "with 0-based positions (0 = best) it is position < k.", False),
    (lambda s, k: _reference(s, k - 1) if k > 1 else 0.0,
     "off by one, too strict: a query whose partner is exactly k-th still counts (rank <= k, not rank < k).", False),
    (lambda s, k: _reference(s, 1),
     "the answer does not change with k: count a query if its partner is among the k best items, not only "
     "the first.", False),
    (lambda s, k: 100 * _reference(s, k), "return a share in [0, 1], not a percentage.", False),
    (lambda s, k: len(s) * _reference(s, k), "return the share of queries (a mean over them), not the count.", False),
    (lambda s, k: M.recall_at_k(_ranks_ties_against(s), k),
     "ties count in the query's favour: rank = 1 + the number of items scored *strictly* higher than the "
     "partner (sim > partner), not >=.", True),
    (lambda s, k: M.recall_at_k(_ranks_by_index(s), k),
     "ties count in the query's favour: sorting breaks ties by index, which can put a tied item ahead of the "
     "partner; count the items scored strictly higher than the partner instead (sim > partner).", True),
]

_TIES = ("right without ties, wrong with ties: the rank is 1 + the number of items scored *strictly* higher "
         "than the partner, so items tied with it do not push it down (sorting or topk break ties arbitrarily).")


def _as_number(got: Any) -> float | None:
    if isinstance(got, torch.Tensor):
        return float(got) if got.numel() == 1 else None
    try:
        return float(got)
    except (TypeError, ValueError):
        return None


def recall_at_k(fn: Callable[[torch.Tensor, int], Any]) -> bool:
    """Check ``fn(sim [N, N], k) -> float`` on fixed similarity matrices (with and without ties) at several
    ``k`` against avlib's ranks (strictly higher items + 1) and R@k."""
    name = "recall_at_k"
    cases = _cases()
    got: list[float] = []
    for sim, k, _ in cases:
        ran, value = run(name, fn, sim.clone(), k)
        if not ran:
            return False
        x = _as_number(value)
        if x is None:
            shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            print(f"{FAIL} {name} returned {shape}; return one number: the share of the N queries whose "
                  f"partner is in the top k (a mean over the queries).")
            return False
        got.append(x)
    want = [_reference(sim, k) for sim, k, _ in cases]
    close = lambda a, b: abs(a - b) <= 1e-5 * max(1.0, abs(b))  # noqa: E731
    bad = [i for i, (x, w) in enumerate(zip(got, want, strict=True)) if not close(x, w)]
    if not bad:
        print(f"{OK} {name} matches avlib.metrics (k = 1 ... N, rows = queries, ties in the query's favour)")
        return True
    sim, k, _ = cases[bad[0]]

    def explains(f: Callable[[torch.Tensor, int], float], about_ties: bool) -> bool:
        """Does mistake ``f`` give every answer (a mistake not about ties: every answer without ties)?"""
        return all(close(x, f(s, kk)) for x, (s, kk, tied) in zip(got, cases, strict=True)
                   if about_ties or not tied)

    hint = next((h for f, h, about_ties in _MISTAKES if explains(f, about_ties)), None)
    if hint is None:
        hint = _TIES if all(cases[i][2] for i in bad) else (
            "rank of query i = 1 + the number of items j with sim[i, j] > sim[i, i]; R@k = the mean over the "
            "queries of (rank <= k).")
    print(f"{FAIL} {name}(sim [{len(sim)}, {len(sim)}], k={k}) = {got[bad[0]]:.4g}, expected "
          f"{want[bad[0]]:.4g}. Hint: {hint}")
    return False
