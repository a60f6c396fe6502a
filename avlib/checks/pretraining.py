"""Self-checks for notebook 10 (pretraining), with targeted hints.

* :func:`lr_schedule` - ``fn(step, base_lr, min_lr, warmup_steps, total_steps) -> lr`` against
  :class:`avlib.train.WarmupCosine` (the learning rate of optimizer update ``step``, counted from 0);
* :func:`resume` - ``fn(run_dir, model, opt, sched) -> step`` restores a killed pretraining run from its last
  checkpoint; checked against :func:`avlib.checkpoint.load_checkpoint` and against an uninterrupted run.

Each prints one ✅ / ❌ (with a hint naming the likely mistake) / ⏭ line and returns True only on success.
The resume check trains a few steps of a tiny-batch pretraining on the profile's dataset in temporary folders
(seconds) and leaves the global random state as it found it.
"""

from __future__ import annotations

import functools
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from avlib.checks import FAIL, OK, SKIP, run

__all__ = ["lr_schedule", "resume", "resume_config"]


# ------------------------------------------------------------------------------------------------------------
# the learning-rate schedule
# ------------------------------------------------------------------------------------------------------------
def _reference(step: int, base: float, mn: float, warmup: int, total: int) -> float:
    from avlib.train import WarmupCosine

    return base * WarmupCosine(warmup, total, mn / base)(step)


def _cos(p: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * p))


# (schedule) -> wrong value for the region it is listed under, with the hint that explains it
_WARMUP_MISTAKES: list[tuple[Callable[..., float], str]] = [
    (lambda s, b, m, W, T: b * s / W,
     "off by one: update 0 would use lr 0 and be wasted. The warm-up is base_lr * (step + 1) / warmup_steps: "
     "update 0 uses base_lr / warmup_steps and update warmup_steps - 1 the full base_lr."),
    (lambda s, b, m, W, T: m + (b - m) * (s + 1) / W,
     "the warm-up rises from near 0, not from min_lr: lr = base_lr * (step + 1) / warmup_steps."),
    (lambda s, b, m, W, T: m + (b - m) * s / W,
     "the warm-up rises from near 0, not from min_lr, and update 0 must not get lr 0: "
     "lr = base_lr * (step + 1) / warmup_steps."),
    (lambda s, b, m, W, T: b,
     "no warm-up: for step < warmup_steps the lr grows linearly, base_lr * (step + 1) / warmup_steps."),
]
_COSINE_MISTAKES: list[tuple[Callable[..., float], str]] = [
    (lambda s, b, m, W, T: b * (s + 1) / W if s == W else _reference(s, b, m, W, T),
     "the warm-up covers updates 0 .. warmup_steps - 1 (step < warmup_steps, not <=); at step = warmup_steps "
     "the cosine starts at base_lr."),
    (lambda s, b, m, W, T: b * _cos((s - W) / (T - W)),
     "no floor: the cosine ends at min_lr, not at 0. lr = min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * "
     "progress))."),
    (lambda s, b, m, W, T: m + (b - m) * _cos((s - W) / T),
     "the cosine does not reach min_lr at total_steps: progress = (step - warmup_steps) / (total_steps - "
     "warmup_steps), which runs from 0 to 1 over the decay."),
    (lambda s, b, m, W, T: m + (b - m) * _cos(s / T),
     "the cosine starts after the warm-up: progress = (step - warmup_steps) / (total_steps - warmup_steps), "
     "so that the lr is base_lr at step = warmup_steps."),
    (lambda s, b, m, W, T: m + (b - m) * _cos((s - W + 1) / (T - W)),
     "off by one at the start of the decay: at step = warmup_steps progress is 0 and lr = base_lr, "
     "progress = (step - warmup_steps) / (total_steps - warmup_steps)."),
    (lambda s, b, m, W, T: m + (b - m) * _cos((s - W) / (T - W - 1)),
     "divide by (total_steps - warmup_steps): progress reaches 1, and the lr min_lr, exactly at total_steps."),
    (lambda s, b, m, W, T: m + (b - m) * math.cos(math.pi * (s - W) / (T - W)),
     "use 0.5 * (1 + cos(pi * progress)), which falls from 1 to 0 (cos alone falls from 1 to -1)."),
    (lambda s, b, m, W, T: m + (b - m) * (1 - (s - W) / (T - W)),
     "that is a linear decay; follow half a cosine: min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * "
     "progress))."),
]
_AFTER_MISTAKES: list[tuple[Callable[..., float], str]] = [
    (lambda s, b, m, W, T: m + (b - m) * _cos((s - W) / (T - W)),
     "after total_steps the cosine climbs back up: clamp progress at 1 (min(1.0, ...)) so the lr stays at "
     "min_lr."),
    (lambda s, b, m, W, T: 0.0,
     "after total_steps the lr stays at the floor min_lr, not 0 (clamp progress at 1)."),
]

# base_lr, min_lr, warmup_steps, total_steps; steps 0 .. total + 20 %
_CASES = [(5e-4, 1e-5, 10, 100), (1.0, 0.0, 3, 7), (1e-3, 1e-4, 1, 20), (2e-4, 1e-6, 32, 960)]


def _region(s: int, W: int, T: int) -> str:
    return "warm-up" if s < W else ("decay" if s <= T else "after")


def _close(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-12)


def lr_schedule(fn: Callable[[int, float, float, int, int], float]) -> bool:
    """Check ``fn(step, base_lr, min_lr, warmup_steps, total_steps)`` against ``base_lr * WarmupCosine(
    warmup_steps, total_steps, min_lr / base_lr)(step)`` on four schedules, including steps past the end."""
    name = "lr_at"
    values: dict[tuple, float] = {}
    for b, m, W, T in _CASES:
        for s in range(0, T + max(3, T // 5) + 1):
            ran, got = run(name, fn, s, b, m, W, T)
            if not ran:
                return False
            try:
                values[(s, b, m, W, T)] = float(got)
            except (TypeError, ValueError):
                print(f"{FAIL} {name}({s}, {b:g}, {m:g}, {W}, {T}) returned {type(got).__name__}; return the "
                      "learning rate as a number.")
                return False
    wrong = [k for k, v in values.items() if not _close(v, _reference(*k))]
    if not wrong:
        print(f"{OK} {name} matches avlib.train.WarmupCosine (warm-up, cosine decay, floor; "
              f"{len(values)} steps of {len(_CASES)} schedules)")
        return True
    order = {"warm-up": 0, "decay": 1, "after": 2}
    region = min((_region(k[0], k[3], k[4]) for k in wrong), key=order.get)
    in_region = [k for k in values if _region(k[0], k[3], k[4]) == region]
    mistakes = {"warm-up": _WARMUP_MISTAKES, "decay": _COSINE_MISTAKES, "after": _AFTER_MISTAKES}[region]
    hint = next((h for f, h in mistakes if all(_close(values[k], f(*k)) for k in in_region)), None)
    if hint is None:
        hint = {"warm-up": "for step < warmup_steps, lr = base_lr * (step + 1) / warmup_steps.",
                "decay": "for warmup_steps <= step <= total_steps, progress = (step - warmup_steps) / (total_steps "
                         "- warmup_steps) and lr = min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * progress)).",
                "after": "after total_steps the lr stays at min_lr."}[region]
    k = max((k for k in wrong if _region(k[0], k[3], k[4]) == region),  # the most telling step
            key=lambda k: abs(values[k] - _reference(*k)) / max(abs(_reference(*k)), 1e-12))
    s, b, m, W, T = k
    print(f"{FAIL} {name}(step={s}, base_lr={b:g}, min_lr={m:g}, warmup_steps={W}, total_steps={T}) = "
          f"{values[k]:.6g}, expected {_reference(*k):.6g} ({region}). Hint: {hint}")
    return False


# ------------------------------------------------------------------------------------------------------------
# resuming from a checkpoint
# ------------------------------------------------------------------------------------------------------------
class _Killed(Exception):
    """Raised from ``on_step`` to stop a run as if the process had been killed."""


def resume_config(run_dir: str | Path, steps: int = 4, checkpoint_every: int = 2, batch_size: int = 4):
    """A tiny pretraining on the profile's dataset (CPU, no bf16, no validation) for resume experiments:
    ``steps`` updates of batch ``batch_size``, a checkpoint every ``checkpoint_every`` steps."""
    from avlib.train import PretrainConfig

    return PretrainConfig(run_dir=str(run_dir), epochs=1, batch_size=batch_size, max_steps=steps,
                          checkpoint_every=checkpoint_every, validate=False, progress=False, amp=False,
                          snapshots=(), device="cpu")


class _Runs:
    """An uninterrupted run and a killed one (kept in a temporary folder for the life of the process)."""

    def __init__(self, steps: int, kill_at: int, every: int, batch_size: int) -> None:
        from avlib.train import pretrain

        self._tmp = tempfile.TemporaryDirectory(prefix="avlib-resume-")
        self.root = Path(self._tmp.name)
        self.cfg = resume_config(self.root / "straight", steps, every, batch_size)
        self.straight = {k: v.clone() for k, v in pretrain(self.cfg).model.state_dict().items()}
        self.killed_dir = self.root / "killed"

        def kill(row: dict) -> None:
            if row["step"] == kill_at:
                raise _Killed

        try:
            pretrain(self.cfg.replace(run_dir=str(self.killed_dir)), on_step=kill)
        except _Killed:
            pass
        self.last = (kill_at // every) * every  # the step of the last checkpoint before the kill
        per_epoch = sum(len(ds) for ds in _datasets(self.cfg)) // batch_size  # full batches (drop_last)
        self.total = per_epoch * self.cfg.epochs
        self.warmup = round(self.cfg.warmup_epochs * per_epoch)
        self.count = 0

    def fresh(self):
        """Model, optimizer and scheduler exactly as the loop builds them before resuming."""
        from avlib.train import optimizer_and_schedule, pretrain_model

        model = pretrain_model(self.cfg)
        return (model, *optimizer_and_schedule(model, self.cfg, self.total, self.warmup))

    def new_dir(self) -> Path:
        self.count += 1
        return self.root / f"try{self.count}"


def _datasets(cfg: Any) -> list:
    from avlib.train.loop import resolve_dataset
    from avlib.train.pretraining import _pretrain_datasets

    return _pretrain_datasets(cfg, resolve_dataset(cfg.data))


@functools.lru_cache(maxsize=4)
def _runs(profile: str, steps: int, kill_at: int, every: int, batch_size: int) -> _Runs:
    return _Runs(steps, kill_at, every, batch_size)


def _state_differs(a: dict, b: dict) -> list[str]:
    return [k for k in b if k not in a or not torch.equal(a[k].cpu(), b[k].cpu())]


def _optimizer_differs(opt: torch.optim.Optimizer, ref: torch.optim.Optimizer) -> bool:
    got, exp = opt.state_dict()["state"], ref.state_dict()["state"]
    if got.keys() != exp.keys():
        return True
    for i in exp:
        for key, value in exp[i].items():
            other = got[i].get(key)
            if not isinstance(other, torch.Tensor) or not torch.equal(other.cpu(), value.cpu()):
                return True
    return False


def resume(fn: Callable[..., int], steps: int = 4, kill_at: int = 3, checkpoint_every: int = 2,
           batch_size: int = 4) -> bool:
    """Check ``fn(run_dir, model, opt, sched) -> step``: on a run without checkpoints it returns 0 and changes
    nothing; on a run killed at step ``kill_at`` (checkpoints every ``checkpoint_every`` steps) it restores
    the last checkpoint's model, AdamW state and LR schedule and returns its step; and a run continued from
    the restored state ends with exactly the weights of an uninterrupted ``steps``-step run."""
    from avlib import env
    from avlib.checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
    from avlib.train import optimizer_and_schedule, pretrain, pretrain_model

    name = "resume"
    saved_rng = rng_state()
    try:
        # 1. nothing to resume: a brand-new run_dir
        with tempfile.TemporaryDirectory(prefix="avlib-resume-empty-") as empty:
            cfg = resume_config(empty, steps, checkpoint_every, batch_size)
            model = pretrain_model(cfg)
            opt, sched = optimizer_and_schedule(model, cfg, 100, 10)
            before = {k: v.clone() for k, v in model.state_dict().items()}
            try:
                got = fn(Path(empty), model, opt, sched)
            except NotImplementedError:
                print(f"{SKIP} {name}: not implemented yet - the notebook continues with the reference version.")
                return False
            except Exception as e:  # noqa: BLE001 - any learner error becomes a verdict
                first = (str(e).strip().splitlines() or [""])[0]
                print(f"{FAIL} {name} raised {type(e).__name__} on a run_dir without checkpoints: {first} Hint: "
                      "latest_checkpoint(run_dir) returns None when there is nothing to resume; return 0 then.")
                return False
            if got != 0 or isinstance(got, bool):
                print(f"{FAIL} {name} returned {got!r} for a run_dir without checkpoints; return 0 there "
                      "(latest_checkpoint(run_dir) is None: nothing to resume, start at step 0).")
                return False
            if _state_differs(model.state_dict(), before):
                print(f"{FAIL} {name} changed the model although the run_dir holds no checkpoint.")
                return False

        # 2. a killed run
        runs = _runs(env.profile_name(), steps, kill_at, checkpoint_every, batch_size)
        model, opt, sched = runs.fresh()
        ran, got = run(name, fn, runs.killed_dir, model, opt, sched)
        if not ran:
            return False
        ref_model, ref_opt, ref_sched = runs.fresh()
        state = load_checkpoint(latest_checkpoint(runs.killed_dir), ref_model, ref_opt, ref_sched)
        if isinstance(got, dict) or not isinstance(got, int) or isinstance(got, bool):
            print(f"{FAIL} {name} returned {type(got).__name__}; return the step to continue from, an int "
                  f"(state['step'] of the loaded checkpoint: {state['step']}).")
            return False
        if got != state["step"]:
            print(f"{FAIL} {name} returned step {got}; the run was killed during step {kill_at} and its last "
                  f"checkpoint holds step {state['step']}: return state['step'] from the loaded checkpoint.")
            return False
        if _state_differs(model.state_dict(), ref_model.state_dict()):
            print(f"{FAIL} {name}: the model's weights are not those of the checkpoint. Hint: load them into "
                  "the model you were given (load_checkpoint(path, model, opt, sched) does that in place).")
            return False
        if _optimizer_differs(opt, ref_opt):
            print(f"{FAIL} {name}: the optimizer state was not restored. Hint: pass opt to load_checkpoint - "
                  "AdamW keeps two running averages per weight (exp_avg, exp_avg_sq) and a step count; a fresh "
                  "optimizer restarts them, so the updates after resuming differ from the uninterrupted run.")
            return False
        if sched.last_epoch != ref_sched.last_epoch:
            print(f"{FAIL} {name}: the LR scheduler is at step {sched.last_epoch}, the checkpoint's at "
                  f"{ref_sched.last_epoch}. Hint: pass sched to load_checkpoint too, or the warm-up starts over.")
            return False

        # 3. continue from the learner's restored state with avlib's loop, compare with the straight run
        cont = runs.new_dir()
        save_checkpoint(cont / "checkpoints" / "last.pt", model=model, optimizer=opt, scheduler=sched, step=got,
                        config=runs.cfg.replace(run_dir=str(cont)), extra={"history": state["extra"]["history"]})
        final = pretrain(runs.cfg.replace(run_dir=str(cont))).model.state_dict()
        if _state_differs(final, runs.straight):
            print(f"{FAIL} {name}: the run continued from your restored state ends with other weights than "
                  "the uninterrupted run. Hint: restore model, optimizer and scheduler from the same checkpoint "
                  "with load_checkpoint(latest_checkpoint(run_dir), model, opt, sched).")
            return False
    finally:
        set_rng_state(saved_rng)
    print(f"{OK} {name} restores step {got} of a run killed during step {kill_at} (weights, AdamW state, LR "
          f"schedule); continued to step {steps}, it ends with exactly the weights of the uninterrupted run")
    return True
