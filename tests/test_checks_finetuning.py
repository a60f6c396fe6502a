"""Self-checks of notebook 12 (``avlib.checks.finetuning``): right answers pass, typical mistakes get their hint."""

import pytest
import torch

import avlib.checks.finetuning  # noqa: F401 - import (models) at collection, not in the first test
from avlib import checks
from avlib import train as T


def _groups(model, lr, weight_decay, head_lr_mult, no_decay, head=lambda n: n.startswith("mlp_head."),
            skip_frozen=True):
    groups = {}
    for name, p in model.named_parameters():
        if skip_frozen and not p.requires_grad:
            continue
        nd, h = no_decay(name, p), head(name)
        g = groups.setdefault((h, nd), {"params": [], "lr": lr * (head_lr_mult if h else 1.0),
                                        "weight_decay": 0.0 if nd else weight_decay})
        g["params"].append(p)
    return list(groups.values())


def _right_rule(name, p):
    return p.ndim <= 1 or name.startswith(("pos_embed", "modality_"))


def good(model, lr, weight_decay, head_lr_mult=10.0):
    return _groups(model, lr, weight_decay, head_lr_mult, _right_rule)


def per_parameter(model, lr, weight_decay, head_lr_mult=10.0):  # one group per tensor is fine too
    return [{"params": [p], "lr": lr * (head_lr_mult if n.startswith("mlp_head.") else 1.0),
             "weight_decay": 0.0 if _right_rule(n, p) else weight_decay}
            for n, p in model.named_parameters() if p.requires_grad]


def avlib_version(model, lr, weight_decay, head_lr_mult=10.0):
    return T.param_groups(model, lr, weight_decay, head_lr_mult=head_lr_mult)


def only_ndim(model, lr, weight_decay, head_lr_mult=10.0):
    return _groups(model, lr, weight_decay, head_lr_mult, lambda n, p: p.ndim <= 1)


def forget_modality(model, lr, weight_decay, head_lr_mult=10.0):
    return _groups(model, lr, weight_decay, head_lr_mult, lambda n, p: p.ndim <= 1 or "pos_embed" in n)


def decay_everything(model, lr, weight_decay, head_lr_mult=10.0):
    return _groups(model, lr, weight_decay, head_lr_mult, lambda n, p: False)


def decay_norms(model, lr, weight_decay, head_lr_mult=10.0):
    return _groups(model, lr, weight_decay, head_lr_mult,
                   lambda n, p: n.endswith(".bias") or n.startswith(("pos_embed", "modality_")))


def no_head_mult(model, lr, weight_decay, head_lr_mult=10.0):
    return _groups(model, lr, weight_decay, 1.0, _right_rule)


def head_linear_only(model, lr, weight_decay, head_lr_mult=10.0):
    return _groups(model, lr, weight_decay, head_lr_mult, _right_rule, head=lambda n: n.startswith("mlp_head.1"))


def everything_fast(model, lr, weight_decay, head_lr_mult=10.0):
    return _groups(model, lr, weight_decay, head_lr_mult, _right_rule, head=lambda n: True)


def hard_coded_mult(model, lr, weight_decay, head_lr_mult=10.0):
    return _groups(model, lr, weight_decay, 10.0, _right_rule)


def keep_frozen(model, lr, weight_decay, head_lr_mult=10.0):
    return _groups(model, lr, weight_decay, head_lr_mult, _right_rule, skip_frozen=False)


def duplicated(model, lr, weight_decay, head_lr_mult=10.0):
    groups = good(model, lr, weight_decay, head_lr_mult)
    return groups + [{"params": [next(model.parameters())], "lr": lr, "weight_decay": 0.0}]


def no_lr_key(model, lr, weight_decay, head_lr_mult=10.0):
    return [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in good(model, lr, weight_decay,
                                                                                     head_lr_mult)]


def lost_head(model, lr, weight_decay, head_lr_mult=10.0):
    return [g for g in good(model, lr, weight_decay, head_lr_mult) if g["lr"] == lr]


def names_not_tensors(model, lr, weight_decay, head_lr_mult=10.0):
    return [{"params": [n for n, _ in model.named_parameters()], "lr": lr, "weight_decay": weight_decay}]


@pytest.mark.parametrize("fn, needle", [
    (only_ndim, "positional tables"),
    (forget_modality, "modality embeddings"),
    (decay_everything, "no weight decay"),
    (decay_norms, "LayerNorm scales and shifts"),
    (no_head_mult, "lr x head_lr_mult"),
    (head_linear_only, "its LayerNorm (mlp_head.0)"),
    (everything_fast, "only the head"),
    (hard_coded_mult, "taken from the arguments"),
    (keep_frozen, "leave frozen parameters out"),
    (duplicated, "exactly one group"),
    (no_lr_key, "'lr'"),
    (lost_head, "in no group"),
    (names_not_tensors, "parameter tensors"),
    (lambda model, *a: list(model.parameters()), "the parameters themselves"),
    (lambda model, *a: good(model, *a)[0], "not one dict"),
])
def test_wrong_versions_get_their_hint(fn, needle, run_check):
    run_check.fails(checks.finetuning.param_groups, fn, hint=needle)


@pytest.mark.parametrize("fn", [good, per_parameter, avlib_version])
def test_right_versions_pass(fn, capsys):
    assert checks.finetuning.param_groups(fn) is True
    out = capsys.readouterr().out
    assert out.startswith("✅") and out.count("\n") == 1, out


def test_skipped_and_crashing(capsys, run_check):
    run_check.skips(checks.finetuning.param_groups)
    assert checks.finetuning.param_groups(lambda model, *a: model.no_such_thing) is False
    assert capsys.readouterr().out.startswith("❌")


def test_example_model_and_rng():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    full, probe = checks.finetuning.example_model(), checks.finetuning.example_model(linear_probe=True)
    assert torch.equal(torch.rand(3), expected)  # the global RNG is left alone
    assert full.pos_embed_a.requires_grad and full.modality_a.ndim == 3  # the cases the name rule is for
    assert [n for n, p in probe.named_parameters() if p.requires_grad] == [
        "mlp_head.0.weight", "mlp_head.0.bias", "mlp_head.1.weight", "mlp_head.1.bias"]
