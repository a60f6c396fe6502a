"""Self-checks of notebook 10 (``avlib.checks.pretraining``): right answers pass, typical mistakes get their hint."""

import math

import pytest
import torch

from avlib import checks
from avlib.checkpoint import latest_checkpoint, load_checkpoint


# ------------------------------------------------------------------------------------------------------------
# lr_at
# ------------------------------------------------------------------------------------------------------------
def lr_good(step, base_lr, min_lr, warmup_steps, total_steps):
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_tensor(step, base_lr, min_lr, warmup_steps, total_steps):
    return torch.tensor(lr_good(step, base_lr, min_lr, warmup_steps, total_steps), dtype=torch.float64)


def lr_off_by_one(step, b, m, W, T):
    return b * step / W if step < W else lr_good(step, b, m, W, T)


def lr_no_floor(step, b, m, W, T):
    return lr_good(step, b, 0.0, W, T)


def lr_divides_by_total(step, b, m, W, T):
    if step < W:
        return lr_good(step, b, m, W, T)
    return m + (b - m) * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - W) / T)))


def lr_unclamped(step, b, m, W, T):
    if step < W:
        return lr_good(step, b, m, W, T)
    return m + (b - m) * 0.5 * (1 + math.cos(math.pi * (step - W) / (T - W)))


def lr_warmup_inclusive(step, b, m, W, T):
    return b * (step + 1) / W if step <= W else lr_good(step, b, m, W, T)


def lr_linear(step, b, m, W, T):
    return b * (step + 1) / W if step < W else m + (b - m) * (1 - min(1.0, (step - W) / (T - W)))


def lr_returns_none(step, b, m, W, T):
    lr_good(step, b, m, W, T)


@pytest.mark.parametrize("fn", [lr_good, lr_tensor])
def test_lr_right_versions_pass(fn, run_check):
    run_check.passes(checks.pretraining.lr_schedule, fn)


@pytest.mark.parametrize("fn, needle", [
    (lr_off_by_one, "off by one"),
    (lr_no_floor, "no floor"),
    (lr_divides_by_total, "does not reach min_lr"),
    (lr_unclamped, "climbs back up"),
    (lr_warmup_inclusive, "not <="),
    (lr_linear, "linear decay"),
    (lr_returns_none, "return the learning rate as a number"),
])
def test_lr_mistakes_get_their_hint(fn, needle, run_check):
    assert run_check.fails(checks.pretraining.lr_schedule, fn, hint=needle).count("\n") == 1  # one line: the hint


def test_lr_skipped(run_check):
    run_check.skips(checks.pretraining.lr_schedule)


# ------------------------------------------------------------------------------------------------------------
# resume
# ------------------------------------------------------------------------------------------------------------
def resume_good(run_dir, model, opt, sched):
    ck = latest_checkpoint(run_dir)
    if ck is None:
        return 0
    return load_checkpoint(ck, model, opt, sched)["step"]


def resume_torch_load(run_dir, model, opt, sched):
    path = run_dir / "checkpoints" / "last.pt"
    if not path.exists():
        return 0
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    return int(state["step"])


def resume_no_optimizer(run_dir, model, opt, sched):
    ck = latest_checkpoint(run_dir)
    return 0 if ck is None else load_checkpoint(ck, model, None, sched)["step"]


def resume_no_scheduler(run_dir, model, opt, sched):
    ck = latest_checkpoint(run_dir)
    return 0 if ck is None else load_checkpoint(ck, model, opt)["step"]


def resume_no_model(run_dir, model, opt, sched):
    ck = latest_checkpoint(run_dir)
    return 0 if ck is None else load_checkpoint(ck, None, opt, sched)["step"]


def resume_returns_state(run_dir, model, opt, sched):
    ck = latest_checkpoint(run_dir)
    return 0 if ck is None else load_checkpoint(ck, model, opt, sched)


def resume_returns_epoch(run_dir, model, opt, sched):
    ck = latest_checkpoint(run_dir)
    return 0 if ck is None else load_checkpoint(ck, model, opt, sched)["epoch"]


def resume_no_first_run(run_dir, model, opt, sched):
    return load_checkpoint(latest_checkpoint(run_dir), model, opt, sched)["step"]


@pytest.mark.parametrize("fn", [resume_good, resume_torch_load])
def test_resume_right_versions_pass(fn, capsys):
    assert checks.pretraining.resume(fn) is True
    out = capsys.readouterr().out
    assert out.startswith("✅") and "step 2" in out and out.count("\n") == 1, out


@pytest.mark.parametrize("fn, needle", [
    (resume_no_optimizer, "optimizer state was not restored"),
    (resume_no_scheduler, "warm-up starts over"),
    (resume_no_model, "weights are not those of the checkpoint"),
    (resume_returns_state, "return the step"),
    (resume_returns_epoch, "returned step 0"),
    (resume_no_first_run, "nothing to resume; return 0"),
])
def test_resume_mistakes_get_their_hint(fn, needle, run_check):
    assert run_check.fails(checks.pretraining.resume, fn, hint=needle).count("\n") == 1  # one line: the hint


def test_resume_skipped_and_leaves_global_rng_alone(run_check):
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    run_check.skips(checks.pretraining.resume)
    checks.pretraining.resume(resume_good)
    assert torch.equal(torch.rand(3), expected)
