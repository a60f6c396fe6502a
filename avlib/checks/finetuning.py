"""Self-checks for notebook 12 (fine-tuning for instrument recognition), with targeted hints.

* :func:`param_groups` - ``fn(model, lr, weight_decay, head_lr_mult) -> [{"params": [...], "lr": ...,
  "weight_decay": ...}, ...]`` against :func:`avlib.train.param_groups`: every trainable parameter in exactly one
  group, at the same learning rate and weight decay (no weight decay for 1-d parameters, positional tables and
  modality embeddings; ``mlp_head.*`` at ``lr * head_lr_mult``; frozen parameters left out).

The check builds its own small :class:`~avlib.models.CAVMAEFT` (trainable positional tables, as after
:func:`avlib.convert.cavmae_to_finetune`) without touching torch's global random state, once fully trainable and
once as a linear probe (only ``mlp_head`` trainable). It prints one ✅ / ❌ (with a hint naming the likely mistake)
/ ⏭ line and returns True only on success.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from avlib.checks import FAIL, OK, run
from avlib.models import CAVMAEFT, get_config

__all__ = ["param_groups", "example_model"]

HEAD = "mlp_head."


def example_model(linear_probe: bool = False) -> CAVMAEFT:
    """A small CAV-MAE classifier (D = 32, 2 + 1 layers, 5 classes, trainable positional tables); with
    ``linear_probe`` only ``mlp_head`` stays trainable. Built without changing torch's global RNG."""
    cfg = get_config("tiny", audio_length=96, num_mel_bins=64, img_size=64, embed_dim=32, num_heads=2,
                     modality_specific_depth=2, tr_pos=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CAVMAEFT(cfg, num_classes=5)
    if linear_probe:
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(HEAD))
    return model


def _settings(groups: list[dict], model: nn.Module) -> dict[str, tuple[float, float]]:
    """Parameter name -> (lr, weight_decay) of the (valid) groups."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    return {name_of[id(p)]: (float(g["lr"]), float(g["weight_decay"])) for g in groups for p in g["params"]}


def _structure_problem(got: object, model: nn.Module) -> tuple[str | None, list[dict]]:
    """``(problem, groups)``: a one-line description of what is wrong with the returned groups (None if they
    are a list of well-formed groups holding each trainable parameter once), and the groups as lists."""
    if isinstance(got, dict):
        return "return a list of groups (dicts), not one dict: [{'params': [...], 'lr': ..., 'weight_decay': ...}, " \
               "...].", []
    if isinstance(got, torch.Tensor) or not hasattr(got, "__iter__"):
        return f"return a list of groups (dicts), got {type(got).__name__}.", []
    items = list(got)
    if items and all(isinstance(x, torch.Tensor) for x in items):
        return ("you returned the parameters themselves; group them: a list of dicts {'params': [...], "
                "'lr': ..., 'weight_decay': ...}, one dict per (lr, weight decay) setting."), []
    groups = []
    for g in items:
        if not isinstance(g, dict):
            return f"each group should be a dict, got {type(g).__name__}.", []
        missing = [k for k in ("params", "lr", "weight_decay") if k not in g]
        if missing:
            return (f"a group has no {' / '.join(repr(k) for k in missing)}: give every group its own 'lr' and "
                    "'weight_decay' (AdamW would silently use its defaults for that group)."), []
        params = [g["params"]] if isinstance(g["params"], torch.Tensor) else list(g["params"])
        groups.append({**g, "params": params})
    name_of = {id(p): n for n, p in model.named_parameters()}
    seen: dict[int, int] = {}
    for g in groups:
        for p in g["params"]:
            if isinstance(p, str):
                return ("'params' holds names; put the parameter tensors there (for name, p in "
                        "model.named_parameters(): ... append p)."), []
            if id(p) not in name_of:
                return "'params' holds a tensor that is not a parameter of the model.", []
            seen[id(p)] = seen.get(id(p), 0) + 1
    twice = [name_of[i] for i, c in seen.items() if c > 1]
    if twice:
        more = f" (so are {len(twice) - 1} more)" if len(twice) > 1 else ""
        return (f"{twice[0]} is in more than one group{more}; each parameter goes in exactly one group "
                "(torch.optim refuses duplicates)."), []
    frozen = [n for n, p in model.named_parameters() if id(p) in seen and not p.requires_grad]
    if frozen:
        return (f"{frozen[0]} is frozen (requires_grad=False, as in a linear probe) but in a group; leave frozen "
                f"parameters out ({len(frozen)} are in) - if p.requires_grad is False, skip it."), []
    lost = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if lost:
        return f"{lost[0]} is in no group ({len(lost)} trainable parameters are missing); every trainable " \
               "parameter needs a group.", []
    return None, groups


def _hint(name: str, p: torch.Tensor, got: tuple[float, float], exp: tuple[float, float], lr: float,
          weight_decay: float, head_lr_mult: float) -> str:
    """Why parameter ``name`` got ``got = (lr, wd)`` instead of ``exp``."""
    head = name.startswith(HEAD)
    if not math.isclose(got[0], exp[0], rel_tol=1e-6):
        if head and math.isclose(got[0], lr, rel_tol=1e-6):
            part = "its LayerNorm (mlp_head.0) as well as its Linear (mlp_head.1)" if name.startswith("mlp_head.0") \
                else "every parameter whose name starts with 'mlp_head.'"
            return f"the classifier head learns at lr x head_lr_mult = {lr * head_lr_mult:g}: {part}."
        if not head and math.isclose(got[0], lr * head_lr_mult, rel_tol=1e-6):
            return "only the head (names starting with 'mlp_head.') gets the multiplier; the encoder learns at lr."
        return f"the learning rate is lr = {lr:g} for the encoder and lr x head_lr_mult = {lr * head_lr_mult:g} " \
               "for mlp_head.*, taken from the arguments."
    if exp[1] == 0.0:
        if "pos_embed" in name:
            why = "positional tables (pos_embed_a, pos_embed_v) get no weight decay: it would pull the position " \
                  "codes towards zero. They are 3-d ([1, L, D]), so test the name, not only p.ndim."
        elif "modality" in name:
            why = "the modality embeddings (modality_a, modality_v) get no weight decay; they are [1, 1, D], so " \
                  "test the name, not only p.ndim."
        elif name.endswith(".bias"):
            why = "biases get no weight decay (every 1-d parameter: p.ndim <= 1)."
        else:
            why = "LayerNorm scales and shifts get no weight decay (every 1-d parameter: p.ndim <= 1)."
        return why
    if got[1] == 0.0:
        return f"{name} is a weight matrix (p.ndim = {p.ndim}): it gets weight_decay = {weight_decay:g}."
    return f"use the weight_decay argument ({weight_decay:g}) for the decayed groups and 0.0 for the others."


def param_groups(fn: Callable[..., list[dict]], lr: float = 3e-4, weight_decay: float = 0.05,
                 head_lr_mult: float = 20.0) -> bool:
    """Check ``fn(model, lr, weight_decay, head_lr_mult)`` against :func:`avlib.train.param_groups` on a
    fully trainable model and on a linear probe: per parameter, the group's ``lr`` and ``weight_decay``."""
    from avlib.train import param_groups as reference

    name = "make_param_groups"
    for case, probe in (("full fine-tuning", False), ("linear probe (only mlp_head trainable)", True)):
        model = example_model(linear_probe=probe)
        ran, got = run(name, fn, model, lr, weight_decay, head_lr_mult)
        if not ran:
            return False
        problem, groups = _structure_problem(got, model)
        if problem is not None:
            print(f"{FAIL} {name} ({case}): {problem}")
            return False
        mine = _settings(groups, model)
        ref = _settings(reference(model, lr, weight_decay, head_lr_mult=head_lr_mult), model)
        params = dict(model.named_parameters())
        wrong = [n for n in ref if not (math.isclose(mine[n][0], ref[n][0], rel_tol=1e-6)
                                        and math.isclose(mine[n][1], ref[n][1], rel_tol=1e-6, abs_tol=0.0))]
        if wrong:
            n = wrong[0]
            hint = _hint(n, params[n], mine[n], ref[n], lr, weight_decay, head_lr_mult)
            decayed = [k for k in wrong if ref[k][1] == 0.0 and mine[k][1] != 0.0]
            kinds = [text for text, hit in (
                ("1-d parameters (biases, LayerNorm scales and shifts: p.ndim <= 1)",
                 any(params[k].ndim <= 1 for k in decayed)),
                ("positional tables (pos_embed_a / pos_embed_v, [1, L, D])", any("pos_embed" in k for k in decayed)),
                ("modality embeddings (modality_a / modality_v, [1, 1, D])", any("modality" in k for k in decayed)))
                if hit]
            if len(kinds) > 1:  # then the tables or embeddings are among them
                hint = ("no weight decay for " + ", nor for ".join(kinds) + " (decay would pull them towards "
                        "zero); the tables and embeddings are not 1-d, so test their names.")
            print(f"{FAIL} {name} ({case}): {len(wrong)} of {len(ref)} parameters get the wrong settings, e.g. "
                  f"{n}: lr {mine[n][0]:g}, weight decay {mine[n][1]:g} (expected lr {ref[n][0]:g}, weight decay "
                  f"{ref[n][1]:g}). Hint: {hint}")
            return False
    print(f"{OK} {name} matches avlib.train.param_groups (lr and weight decay of every parameter; full "
          "fine-tuning and linear probe)")
    return True
