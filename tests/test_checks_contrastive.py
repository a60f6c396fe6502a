"""Self-checks of notebook 08 (``avlib.checks.contrastive``): right answers pass, typical mistakes get their hint."""

import pytest
import torch
import torch.nn.functional as F

from avlib import checks
from avlib.losses import info_nce


def _logits(a, v, temperature, normalize=True):
    if normalize:
        a, v = F.normalize(a, dim=-1), F.normalize(v, dim=-1)
    return a @ v.T / temperature  # [B, B], rows = audio


def _nce(logits, dim):
    return -torch.diag(F.log_softmax(logits, dim=dim)).mean()


def good(a, v, temperature=0.05):
    logits = _logits(a, v, temperature)
    return (_nce(logits, 0) + _nce(logits, 1)) / 2


def with_cross_entropy(a, v, temperature=0.05):
    logits = _logits(a, v, temperature)
    target = torch.arange(len(a))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def one_way(a, v, temperature=0.05):
    return _nce(_logits(a, v, temperature), 0)


def other_way(a, v, temperature=0.05):
    return _nce(_logits(a, v, temperature), 1)


def summed(a, v, temperature=0.05):
    logits = _logits(a, v, temperature)
    return _nce(logits, 0) + _nce(logits, 1)


def no_l2(a, v, temperature=0.05):
    logits = _logits(a, v, temperature, normalize=False)
    return (_nce(logits, 0) + _nce(logits, 1)) / 2


def no_temperature(a, v, temperature=0.05):
    return good(a, v, 1.0)


def times_temperature(a, v, temperature=0.05):
    return good(a, v, 1.0 / temperature)


def per_pair(a, v, temperature=0.05):
    logits = _logits(a, v, temperature)
    return -(torch.diag(F.log_softmax(logits, 0)) + torch.diag(F.log_softmax(logits, 1))) / 2  # [B]


def wrong_sign(a, v, temperature=0.05):
    return -good(a, v, temperature)


def crash(a, v, temperature=0.05):
    return a @ v  # [B, D] @ [B, D]: shape error


@pytest.mark.parametrize("fn, needle", [
    (one_way, "dim=0"),
    (other_way, "dim=1"),
    (summed, "mean"),
    (no_l2, "L2-normalise"),
    (no_temperature, "divide the cosine"),
    (times_temperature, "do not multiply"),
    (per_pair, "one number"),
    (wrong_sign, "sign"),
])
def test_wrong_versions_get_their_hint(fn, needle, run_check):
    run_check.fails(checks.contrastive.symmetric_info_nce, fn, hint=needle)


@pytest.mark.parametrize("fn", [good, with_cross_entropy,
                                lambda a, v, temperature=0.05: info_nce(a, v, temperature, bidirectional=True)])
def test_right_versions_pass(fn, run_check):
    run_check.passes(checks.contrastive.symmetric_info_nce, fn)


def test_skipped_and_crashing(run_check):
    run_check.skips(checks.contrastive.symmetric_info_nce)
    run_check.fails(checks.contrastive.symmetric_info_nce, crash, hint="raised RuntimeError")
