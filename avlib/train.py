"""Training: CAV-MAE pretraining and fine-tuning as plain PyTorch loops, label efficiency, and the main job.

::

    pre = pretrain(PretrainConfig(epochs=2))                        # -> TrainResult(model, history, ...)
    ft = finetune(FinetuneConfig(pretrained=pre.model_dir, mode="multimodal"))
    table = label_efficiency(FinetuneConfig(), pretrained=pre.model_dir, fractions=(0.1, 1.0))
    results = run_all("course")                                      # = make run

Both loops are the same few lines: AdamW with per-parameter-group learning rates (no weight decay on biases,
norms, tokens and positional tables), a per-step linear warm-up then cosine decay (:class:`WarmupCosine`),
gradient clipping, bf16 autocast (CUDA, and CPUs with native bf16), a ``tqdm`` bar, a metric row per step.

Differences from the reference recipes (cavmae-reference.md §3): AdamW instead of Adam + weight decay 5e-7,
a real warm-up and a cosine schedule instead of step decay, gradient clipping, optional layer-wise lr decay;
the model starts from scratch (no ImageNet weights), so the lr is higher (5e-4). Kept: loss weights (MAE 1.0,
contrastive 0.01, the profile's ``contrast_loss_weight``), 75 % masking, head lr multiplier, mixup, label
smoothing, SpecAugment, noise augmentation, uniform checkpoint weight averaging over the last epochs, frame
aggregation. Measured on course data (tiny, batch 32, lr 5e-4, 250 steps): a contrastive weight of 0.1 or 1.0
keeps the video MAE at 0.97 (0.01: 0.96 -> 0.64) and does not lift the in-batch contrastive accuracy
measurably above chance (0.06 vs 0.04; chance 1/32), so 0.01 stays.

Reproducibility. Batches come from :class:`~avlib.distributed.GlobalBatchSampler` (a permutation per epoch),
dataset augmentations from per-(seed, epoch, item) generators, masking noise from a per-step generator. A
checkpoint (``<run_dir>/checkpoints/last.pt``, atomic, every ``checkpoint_every`` steps) holds model,
optimizer, scheduler, RNG states, step and config, so a killed run resumed with the same config ends with the
same weights as an uninterrupted one.

Data parallel. Under ``torchrun --nproc_per_node=N`` the loops use DDP: ``batch_size`` is the global batch,
each rank loads its slice, contrastive negatives are all-gathered across ranks with gradients
(:func:`~avlib.distributed.info_nce_all_gather`), and only rank 0 writes files.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from avlib import distributed as dist
from avlib import env
from avlib.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, to_plain, unwrap
from avlib.evaluate import ClipTensors, autocast, evaluate, load_split

__all__ = ["PretrainConfig", "FinetuneConfig", "TrainResult", "WarmupCosine", "param_groups", "layer_id",
           "optimizer_and_schedule", "resolve_amp", "dataset_root", "pretrain", "pretrain_model",
           "pretrain_snapshots", "pretrain_losses", "finetune", "label_efficiency", "main_run_dir",
           "main_pretrain_config", "main_finetune_config", "main_finetune_row", "main_label_efficiency", "run_all",
           "results_markdown", "main"]


def _prof(name: str, transform: Callable[[Any], Any] = lambda x: x):
    return field(default_factory=lambda: transform(getattr(env.profile(), name)))


# ------------------------------------------------------------------------------------------------------------
# configs and results
# ------------------------------------------------------------------------------------------------------------
@dataclass
class _Common:
    """Fields shared by both loops. Sizes default to the active profile (``AVLIB_PROFILE``)."""

    data: str | None = None  # dataset root (holds datafiles/); None: generate / reuse the profile's dataset
    run_dir: str | None = None  # where checkpoints, history and the model go; None: runs/<profile>/<name>
    model: str = _prof("model")  # named size for avlib.models.create_model
    model_overrides: dict = field(default_factory=dict)  # extra CAVMAEConfig fields
    batch_size: int = _prof("batch_size")  # global batch (all ranks together)
    max_steps: int | None = None  # stop early after this many steps (the schedule still spans all epochs)
    warmup_epochs: float = 1.0
    betas: tuple[float, float] = (0.95, 0.999)  # the reference's Adam betas
    clip_grad: float | None = 1.0  # max global gradient norm (None: no clipping)
    noise: bool = True  # CAV-MAE fbank noise + time roll (every reference recipe)
    augment_video: bool = False  # random resized crop + flip (the reference has none)
    amp: bool | None = None  # bf16 autocast; None: on CUDA, and on CPUs with native bf16
    compile: bool = False  # torch.compile the model (gains nothing on CPU, see environment.md)
    num_workers: int = 0  # DataLoader worker processes
    checkpoint_every: int = 50  # steps between training-state checkpoints (0: only at the end)
    seed: int = 0
    device: str | None = None  # None: AVLIB_DEVICE, else cuda -> mps -> cpu
    resume: bool = True  # continue from <run_dir>/checkpoints/last.pt if it exists
    progress: bool = True  # tqdm bar

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return to_plain(self)


@dataclass
class PretrainConfig(_Common):
    """Self-supervised CAV-MAE pretraining (the reference's recipe, cavmae-reference.md §3.1)."""

    splits: tuple[str, ...] = ("unlabeled", "train")  # datafiles to pretrain on (labels are ignored)
    epochs: int = _prof("pretrain_epochs")
    lr: float = 5e-4  # peak learning rate (after warm-up)
    min_lr: float = 1e-5  # end of the cosine
    weight_decay: float = 0.05
    mask_ratio_a: float = 0.75
    mask_ratio_v: float = 0.75
    mask_mode: str = "unstructured"  # audio: unstructured | time | freq | tf
    mae_loss_weight: float = 1.0
    contrast_loss_weight: float = _prof("contrast_loss_weight")
    bidirectional_contrast: bool = False
    validate: bool = True  # losses on the val split (fixed masks) after every epoch
    snapshots: tuple[float, ...] = (0.5,)  # also save the model at these fractions of the run (model_step<N>/)


@dataclass
class FinetuneConfig(_Common):
    """Supervised fine-tuning of a :class:`~avlib.models.CAVMAEFT` (reference recipe, §3.2)."""

    pretrained: str | None = None  # directory written by pretrain (<run_dir>/model); None: from scratch
    mode: str = "multimodal"  # multimodal | audioonly | videoonly (training and evaluation branch)
    train_split: str = "train"
    val_split: str | None = "val"  # None: no validation
    epochs: int = _prof("finetune_epochs")
    min_steps: int = 0  # train at least this many steps (more epochs for small label fractions)
    lr: float = 2e-4  # peak lr of the encoder
    min_lr: float = 1e-6
    head_lr_mult: float = 10.0  # mlp_head learns at lr x head_lr_mult (reference: 10 - 100)
    layer_decay: float | None = None  # layer-wise lr decay (e.g. 0.75); None: off (the reference)
    weight_decay: float = 0.01
    linear_probe: bool = False  # train only mlp_head (the reference's freeze_base)
    loss: str = "ce"  # ce (single label, soft targets) | bce (multi-label)
    freqm: int = 48  # SpecAugment frequency mask (of 128 mel bins, as the reference)
    timem: int = _prof("target_length", lambda t: round(192 * t / 1024))  # reference: 192 of 1024 frames
    mixup: float = 0.5  # probability per item
    label_smoothing: float = 0.1
    label_fraction: float | None = None  # train on this share of the labelled clips (per class)
    weight_averaging: bool = True  # final weights = uniform mean of the end-of-epoch weights from wa_from on
    wa_from: float = 0.3  # first averaged epoch = floor(wa_from * epochs) + 1
    val_every: int | None = None  # epochs between validations; None: about 10 validations per run

    def __post_init__(self) -> None:
        if self.mode not in ("multimodal", "audioonly", "videoonly"):
            raise ValueError(f"mode must be multimodal, audioonly or videoonly, got {self.mode!r} (the "
                             f"missing*only modes are for testing an AV model, see avlib.evaluate).")
        if self.loss not in ("ce", "bce"):
            raise ValueError(f"loss must be 'ce' or 'bce', got {self.loss!r}.")


@dataclass
class TrainResult:
    """What a training run returns (and wrote under ``run_dir``)."""

    model: nn.Module  # the trained model (weight-averaged for fine-tuning), in eval mode, on the device
    history: list[dict]  # one row per step (+ validation rows); also history.csv / history.json
    run_dir: Path
    model_dir: Path  # save_pretrained output: model.safetensors + config.json
    config: Any
    steps: int
    wall_s: float
    final: dict = field(default_factory=dict)  # last validation metrics

    def __repr__(self) -> str:
        return (f"TrainResult(run_dir={str(self.run_dir)!r}, steps={self.steps}, wall_s={self.wall_s:.1f}, "
                f"final={ {k: round(v, 4) if isinstance(v, float) else v for k, v in self.final.items()} })")


# ------------------------------------------------------------------------------------------------------------
# optimiser and schedule
# ------------------------------------------------------------------------------------------------------------
def layer_id(name: str, depth_ms: int, depth_shared: int) -> int:
    """Depth of a parameter for layer-wise lr decay: embeddings 0, ``blocks_a.i`` / ``blocks_v.i`` i + 1,
    ``blocks_u.j`` ``depth_ms + 1 + j``, everything after the encoder (norms, head, decoder) ``depth + 1``."""
    if name.startswith(("patch_embed", "pos_embed", "modality_")):
        return 0
    parts = name.split(".")
    if parts[0] in ("blocks_a", "blocks_v"):
        return int(parts[1]) + 1
    if parts[0] == "blocks_u":
        return depth_ms + 1 + int(parts[1])
    return depth_ms + depth_shared + 1


def _no_weight_decay(name: str, p: torch.Tensor) -> bool:
    return p.ndim <= 1 or name.endswith(".bias") or "pos_embed" in name or "modality" in name or \
        "token" in name or name == "logit_scale"


def param_groups(model: nn.Module, lr: float, weight_decay: float, layer_decay: float | None = None,
                 head_lr_mult: float = 1.0, head_prefix: str = "mlp_head.") -> list[dict]:
    """AdamW parameter groups: weight decay off for 1-D params, biases, tokens and positional tables; lr
    scaled by ``layer_decay ** (depth + 1 - layer_id)`` and by ``head_lr_mult`` for the classifier head.
    Frozen parameters are left out. Each group holds ``lr_scale`` and a readable ``group`` name."""
    cfg = unwrap(model).cfg
    depth = cfg.modality_specific_depth + cfg.shared_depth
    groups: dict[tuple, dict] = {}
    for name, p in unwrap(model).named_parameters():
        if not p.requires_grad:
            continue
        no_wd = _no_weight_decay(name, p)
        lid = layer_id(name, cfg.modality_specific_depth, cfg.shared_depth)
        scale = layer_decay ** (depth + 1 - lid) if layer_decay else 1.0
        is_head = name.startswith(head_prefix)
        if is_head:
            scale *= head_lr_mult
        key = (lid if layer_decay else 0, is_head, no_wd)
        if key not in groups:
            label = ("head" if is_head else (f"layer{lid}" if layer_decay else "body")) + \
                ("/no_wd" if no_wd else "")
            groups[key] = {"params": [], "lr": lr * scale, "lr_scale": scale,
                           "weight_decay": 0.0 if no_wd else weight_decay, "group": label}
        groups[key]["params"].append(p)
    return list(groups.values())


class WarmupCosine:
    """LR multiplier per optimizer step: linear warm-up from ``1/warmup`` to 1 over ``warmup`` steps, then a
    cosine from 1 to ``min_ratio`` at ``total`` steps (constant after). Use with ``LambdaLR``; a plain object,
    so the scheduler's ``state_dict`` holds its settings."""

    def __init__(self, warmup: int, total: int, min_ratio: float = 0.0) -> None:
        self.warmup, self.total, self.min_ratio = int(warmup), int(total), float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def optimizer_and_schedule(model: nn.Module, cfg: PretrainConfig | FinetuneConfig, total_steps: int,
                           warmup_steps: int, **group_kw: Any) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over :func:`param_groups` (``cfg.lr``, ``cfg.weight_decay``, ``cfg.betas``; ``group_kw``: e.g.
    ``layer_decay``, ``head_lr_mult``) and a per-step ``LambdaLR(WarmupCosine)`` down to ``cfg.min_lr``: what both
    training loops build before they resume."""
    opt = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.weight_decay, **group_kw), lr=cfg.lr, betas=cfg.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(warmup_steps, total_steps, cfg.min_lr / cfg.lr))
    return opt, sched

def resolve_amp(amp: bool | None, device: torch.device) -> bool:
    """bf16 autocast on? ``None`` = on for CUDA and for CPUs with native bf16 (``env.cpu_supports_bf16``)."""
    if amp is not None:
        return bool(amp)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and env.cpu_supports_bf16()


# ------------------------------------------------------------------------------------------------------------
# shared pieces of the two loops
# ------------------------------------------------------------------------------------------------------------
def dataset_root(data: str | Path | None) -> Path:
    """The dataset folder: ``data`` if given (must hold ``datafiles/``), else the profile's generated one."""
    if data is None:
        from avlib.data.orchestra import generate

        return Path(generate())
    root = Path(data)
    if not (root / "datafiles").is_dir():
        raise FileNotFoundError(f"{root} is not a dataset folder (no datafiles/ inside); generate one with "
                                f"`python -m avlib data` or pass data=<folder holding datafiles/>.")
    return root


def _run_dir(cfg: _Common, name: str) -> Path:
    return Path(cfg.run_dir) if cfg.run_dir else env.ROOT / "runs" / env.profile_name() / name


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + 12_345) % (2**63 - 1)


def _write_history(run_dir: Path, history: list[dict]) -> None:
    keys = list(dict.fromkeys(k for row in history for k in row))
    tmp = run_dir / "history.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(history)
    tmp.replace(run_dir / "history.csv")
    (run_dir / "history.json").write_text(json.dumps(history, indent=1) + "\n")


def _lock_run_dir(run_dir: Path):
    """Hold an exclusive lock on ``run_dir`` while a loop trains there: a second process (a notebook run while
    ``make run`` trains, two nbval workers) waits, then resumes the finished checkpoint instead of racing it."""
    import fcntl

    f = open(run_dir / ".lock", "w")  # noqa: SIM115 - held open until release()
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"{env.display_path(run_dir)} is in use by another process; waiting for it to finish ...", flush=True)
        fcntl.flock(f, fcntl.LOCK_EX)
    return f


# fields that may change between a run and its resumption (where and how it runs, not what it computes)
_RUNTIME_FIELDS = {"data", "run_dir", "device", "num_workers", "checkpoint_every", "resume", "progress",
                   "max_steps", "compile"}


class _Loop:
    """Device, process group, optimizer, schedule, checkpointing and logging shared by the two loops."""

    def __init__(self, cfg: _Common, name: str) -> None:
        self.cfg = cfg
        self.info = dist.init_distributed(env.pick_device(cfg.device))
        self.device = self.info.device
        self.amp = resolve_amp(cfg.amp, self.device)
        self.run_dir = _run_dir(cfg, name)
        if self.info.is_main:
            (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            (self.run_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        self.history: list[dict] = []
        self.step = 0
        self.start_step = 0  # where this call began (> 0 after a resume)
        self._lock = _lock_run_dir(self.run_dir) if self.info.is_main else None
        self.t0 = time.time()

    def release(self) -> None:
        """Let other processes train in this run_dir (see :func:`_lock_run_dir`)."""
        if self._lock is not None:
            self._lock.close()  # closing the file drops the flock
            self._lock = None

    def loader(self, ds, drop_last: bool) -> tuple[torch.utils.data.DataLoader, dist.GlobalBatchSampler]:
        sampler = dist.GlobalBatchSampler(len(ds), min(self.cfg.batch_size, len(ds)) if not drop_last else
                                          self.cfg.batch_size, rank=self.info.rank,
                                          world=self.info.world_size, seed=self.cfg.seed, drop_last=drop_last)
        loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=self.cfg.num_workers,
                                             persistent_workers=False)
        return loader, sampler

    def maybe_resume(self, model: nn.Module, opt, sched) -> dict:
        ck = latest_checkpoint(self.run_dir) if self.cfg.resume else None
        if ck is None:
            return {}
        state = load_checkpoint(ck, model, opt, sched, map_location=self.device)
        where = lambda k, v: env.display_path(v) if k == "pretrained" and v else v  # noqa: E731 - repo may move
        saved, now = ({k: where(k, v) for k, v in c.items()} for c in (state.get("config") or {}, self.cfg.to_dict()))
        diff = sorted(k for k in now.keys() & saved.keys() if k not in _RUNTIME_FIELDS and now[k] != saved[k])
        if diff:
            raise ValueError(f"{env.display_path(ck)} was written with a different config ({', '.join(diff)}: "
                             f"{', '.join(f'{saved[k]!r} -> {now[k]!r}' for k in diff)}). Use another run_dir, "
                             f"delete that folder, or pass resume=False to start over.")
        self.step = self.start_step = state["step"]
        self.history = state["extra"].get("history", [])
        return state["extra"]

    def wrap(self, model: nn.Module, find_unused: bool = False) -> nn.Module:
        if self.cfg.compile:
            model = torch.compile(model)
        if self.info.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                        find_unused_parameters=find_unused)
        return model

    def stop_step(self, total: int) -> int:
        """The step this run ends at: ``total``, or ``cfg.max_steps`` if that comes first."""
        return min(total, self.cfg.max_steps) if self.cfg.max_steps is not None else total

    def batches(self, loader, sampler, ds, per_epoch: int, stop: int):
        """Yield ``(epoch, batch)`` until step ``stop``; a resumed run starts mid-epoch where its checkpoint left off
        (the sampler skips the batches already done). The body must call :meth:`backward_step` once per batch."""
        while self.step < stop:
            epoch = self.step // per_epoch
            sampler.set_epoch(epoch, start_batch=self.step - epoch * per_epoch)
            ds.set_epoch(epoch)
            for batch in loader:
                yield epoch, batch
                if self.step >= stop:
                    return

    def backward_step(self, model: nn.Module, loss: torch.Tensor, opt, sched) -> float:
        """Backward, clip, optimizer and scheduler step; return the gradient norm (before clipping)."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in model.parameters() if p.grad is not None]
        if self.cfg.clip_grad:
            gnorm = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad))
        else:
            gnorm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
        opt.step()
        sched.step()
        self.step += 1
        return gnorm

    def log(self, row: dict, reduce_keys: Sequence[str] = ()) -> dict:
        if reduce_keys and self.info.world_size > 1:
            vals = dist.all_reduce_mean(torch.tensor([row[k] for k in reduce_keys], dtype=torch.float64))
            row.update({k: float(v) for k, v in zip(reduce_keys, vals, strict=True)})
        row["time_s"] = round(time.time() - self.t0, 3)
        self.history.append(row)
        return row

    def must_save(self, model_dir: Path) -> bool:
        """Whether to write the final model: on the main rank, unless this call only reloaded a finished run whose
        model is already saved (a second writer could otherwise be caught half-way by a reader)."""
        return self.info.is_main and (self.step > self.start_step or not (model_dir / "config.json").is_file())

    def checkpoint_if_due(self, model, opt, sched, epoch: int, stop: int, extra: dict | None = None) -> None:
        """Checkpoint every ``cfg.checkpoint_every`` steps and at the last step."""
        if self.step >= stop or (self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0):
            self.checkpoint(model, opt, sched, epoch, extra)

    def checkpoint(self, model, opt, sched, epoch: int, extra: dict | None = None) -> None:
        if self.info.is_main:
            save_checkpoint(self.run_dir / "checkpoints" / "last.pt", model=model, optimizer=opt,
                            scheduler=sched, step=self.step, epoch=epoch, config=self.cfg,
                            extra={"history": self.history, **(extra or {})})
            _write_history(self.run_dir, self.history)
        dist.barrier()

    def bar(self, total: int, desc: str):
        return tqdm(total=total, initial=self.step, desc=desc, dynamic_ncols=True,
                    disable=not (self.cfg.progress and self.info.is_main))


def _f(x: torch.Tensor) -> float:
    return float(x.detach())


def _to(batch: dict, key: str, device: torch.device) -> torch.Tensor | None:
    return batch[key].to(device, non_blocking=True) if key in batch else None


# ------------------------------------------------------------------------------------------------------------
# pretraining
# ------------------------------------------------------------------------------------------------------------
def _pretrain_datasets(cfg: PretrainConfig, root: Path):
    from avlib.data.dataset import AVDataset, AVDatasetConfig

    dcfg = AVDatasetConfig(train=True, noise=cfg.noise, augment_video=cfg.augment_video)
    parts = [AVDataset(root / "datafiles" / f"{s}.json", cfg=dcfg, seed=cfg.seed + i)
             for i, s in enumerate(cfg.splits)]
    return parts


class _Concat(torch.utils.data.ConcatDataset):
    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            d.set_epoch(epoch)


def _mask_noise(model: nn.Module, step: int, seed: int, global_batch: int, rank: int, local: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Masking noise of one step for the *global* batch, sliced to this rank's rows: the same masks whatever
    the number of processes, and a pure function of (seed, step), so resuming needs no generator state."""
    cfg = unwrap(model).cfg
    g = torch.Generator().manual_seed(_step_seed(seed, step))
    noise_a = torch.rand(global_batch, cfg.num_patches_a, generator=g)  # [G, La]
    noise_v = torch.rand(global_batch, cfg.num_patches_v, generator=g)  # [G, Lv]
    rows = slice(rank * local, (rank + 1) * local)
    return noise_a[rows], noise_v[rows]


def _pretrain_loss(model: nn.Module, out) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, loss_c, c_acc)`` with the contrastive term recomputed in float32 outside autocast (in bf16 the
    cosine logits / 0.05 are quantised to steps of 0.125, which hides the small differences between clips
    early in training) and, on several processes, against all-gathered negatives (so it equals the
    single-process value on the global batch). The MAE terms are the model's."""
    m = unwrap(model)
    with torch.autocast(out.latent_c_a.device.type, enabled=False):
        za, zv = out.latent_c_a.float().mean(1), out.latent_c_v.float().mean(1)  # [b, D] pooled
        l_c, acc = dist.info_nce_all_gather(za, zv, m.temperature, m.cfg.bidirectional_contrast)
    return out.loss_mae + m.cfg.contrast_loss_weight * l_c, l_c, acc


@torch.no_grad()
def pretrain_losses(model: nn.Module, clips: ClipTensors, cfg: PretrainConfig, batch_size: int = 32,
                    amp: bool = False) -> dict[str, float]:
    """Mean pretraining losses on ``clips`` with fixed masks (seeded by ``cfg.seed``), model in eval mode."""
    m = unwrap(model)
    was = m.training
    m.eval()
    dev = next(m.parameters()).device
    sums: dict[str, float] = {}
    n = 0
    view = ClipTensors(clips.audio, clips.middle_frame(), clips.labels)
    for i, (a, v) in enumerate(view.batches(batch_size)):
        na, nv = _mask_noise(m, -1 - i, cfg.seed, len(a), 0, len(a))
        with autocast(dev, amp):
            out = m(a.to(dev), v.to(dev), cfg.mask_ratio_a, cfg.mask_ratio_v, cfg.mask_mode,
                    noise_a=na.to(dev), noise_v=nv.to(dev))
        vals = {"loss": out.loss, "loss_mae_a": out.loss_mae_a, "loss_mae_v": out.loss_mae_v,
                "loss_c": out.loss_c_unweighted, "c_acc": out.c_acc}
        for k, x in vals.items():
            sums[k] = sums.get(k, 0.0) + float(x) * len(a)
        n += len(a)
    m.train(was)
    return {k: s / n for k, s in sums.items()}


def pretrain_model(cfg: PretrainConfig | None = None, dataset_cfg: Any = None) -> nn.Module:
    """The model :func:`pretrain` starts from: ``env.seed_everything(cfg.seed)``, then ``create_model`` with the
    dataset's sizes (``dataset_cfg``: an ``AVDatasetConfig``; default: the profile's) and the config's loss
    weights. Its weights are those of step 0 of a run with this config (the "before training" baseline).
    Seeds the global RNGs, as the loop does."""
    from avlib.data.dataset import AVDatasetConfig
    from avlib.models import create_model

    cfg = cfg or PretrainConfig()
    dcfg = dataset_cfg or AVDatasetConfig(train=True, noise=cfg.noise, augment_video=cfg.augment_video)
    env.seed_everything(cfg.seed)
    return create_model(cfg.model, audio_length=dcfg.target_length, num_mel_bins=dcfg.num_mel_bins,
                        img_size=dcfg.image_size, mae_loss_weight=cfg.mae_loss_weight,
                        contrast_loss_weight=cfg.contrast_loss_weight,
                        bidirectional_contrast=cfg.bidirectional_contrast, **cfg.model_overrides)


def pretrain_snapshots(run_dir: str | Path) -> dict[int, Path]:
    """The model snapshots a pretraining run saved (``<run_dir>/model_step<N>/``, see
    ``PretrainConfig.snapshots``) as ``{N: folder}`` in step order; load one with
    ``avlib.models.from_pretrained``. Empty if there are none."""
    found = {}
    for p in Path(run_dir).glob("model_step*"):
        n = p.name[len("model_step"):]
        if n.isdigit() and (p / "config.json").is_file():
            found[int(n)] = p
    return dict(sorted(found.items()))


def pretrain(cfg: PretrainConfig | None = None, on_step: Callable[[dict], None] | None = None,
             **overrides: Any) -> TrainResult:
    """Pretrain a CAV-MAE (masked reconstruction of both modalities + audio-visual InfoNCE).

    Writes ``<run_dir>/model`` (``save_pretrained``), ``history.csv/json``, ``train_config.json`` and the
    resumable ``checkpoints/last.pt``. ``on_step(row)`` is called after every step with its metric row.
    """
    from avlib.models import save_pretrained

    cfg = (cfg or PretrainConfig()).replace(**overrides)
    loop = _Loop(cfg, "pretrain")
    try:
        root = dataset_root(cfg.data)
        ds = _Concat(_pretrain_datasets(cfg, root))
        dcfg = ds.datasets[0].cfg
        model = pretrain_model(cfg, dcfg).to(loop.device)
        loader, sampler = loop.loader(ds, drop_last=True)
        per_epoch = len(sampler)
        total = per_epoch * cfg.epochs
        opt, sched = optimizer_and_schedule(model, cfg, total, round(cfg.warmup_epochs * per_epoch))
        loop.maybe_resume(model, opt, sched)
        val = None
        if cfg.validate and (root / "datafiles" / "val.json").is_file():
            val = load_split(root / "datafiles" / "val.json", progress=False, cache=True)
        ddp = loop.wrap(model)
        stop = loop.stop_step(total)
        G, b = cfg.batch_size, cfg.batch_size // loop.info.world_size
        bar = loop.bar(stop, "pretrain")
        snap_steps = {round(f * total) for f in cfg.snapshots if 0 < f < 1}

        def extra(dcfg, ds) -> dict:  # stored with every saved model
            return {"preprocessing": _preprocessing(dcfg, ds.datasets[0]), "train_config": cfg.to_dict(),
                    "steps": loop.step}

        model.train()
        for epoch, batch in loop.batches(loader, sampler, ds, per_epoch, stop):
            audio, video = _to(batch, "audio", loop.device), _to(batch, "video", loop.device)
            noise_a, noise_v = _mask_noise(model, loop.step, cfg.seed, G, loop.info.rank, b)
            with autocast(loop.device, loop.amp):
                out = ddp(audio, video, cfg.mask_ratio_a, cfg.mask_ratio_v, cfg.mask_mode,
                          noise_a=noise_a.to(loop.device), noise_v=noise_v.to(loop.device))
                loss, loss_c, c_acc = _pretrain_loss(model, out)
            lr = opt.param_groups[0]["lr"] / opt.param_groups[0]["lr_scale"]
            gnorm = loop.backward_step(ddp, loss, opt, sched)
            row = loop.log({"step": loop.step, "epoch": epoch, "lr": lr, "loss": _f(loss),
                            "loss_mae_a": _f(out.loss_mae_a), "loss_mae_v": _f(out.loss_mae_v),
                            "loss_c": _f(loss_c), "c_acc": _f(c_acc),
                            "grad_norm": gnorm}, reduce_keys=("loss", "loss_mae_a", "loss_mae_v", "loss_c",
                                                              "c_acc"))
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", c_acc=f"{row['c_acc']:.2f}", refresh=False)
            if on_step is not None:
                on_step(row)
            end_of_epoch = loop.step % per_epoch == 0
            if end_of_epoch and val is not None:
                v = pretrain_losses(model, val, cfg, amp=loop.amp)
                loop.history.append({"step": loop.step, "epoch": epoch,
                                     **{f"val_{k}": x for k, x in v.items()}})
            if loop.step in snap_steps and loop.info.is_main:
                save_pretrained(model, loop.run_dir / f"model_step{loop.step}", extra=extra(dcfg, ds))
            loop.checkpoint_if_due(model, opt, sched, epoch, stop)
        bar.close()
        model_dir = loop.run_dir / "model"
        if loop.must_save(model_dir):
            save_pretrained(model, model_dir, extra=extra(dcfg, ds))
            _write_history(loop.run_dir, loop.history)
        dist.barrier()
        model.eval()
        final = {k: v for k, v in loop.history[-1].items() if k.startswith("val_")} if loop.history else {}
        return TrainResult(model=model, history=loop.history, run_dir=loop.run_dir, model_dir=model_dir,
                           config=cfg, steps=loop.step, wall_s=time.time() - loop.t0, final=final)
    finally:
        loop.release()


def _preprocessing(dcfg, ds) -> dict:
    """What predict needs to turn a file into model input, stored with every model."""
    stats = getattr(ds, "stats", None)
    if stats is None:  # a video-only dataset did not load them; keep them for audio-visual use of the model
        from avlib.audio import AudioStats
        from avlib.data.datafile import STATS_FILE

        path = ds.root / STATS_FILE
        stats = AudioStats.load(path) if path.is_file() else None
    return {"sample_rate": dcfg.sample_rate, "num_mel_bins": dcfg.num_mel_bins,
            "target_length": dcfg.target_length, "image_size": dcfg.image_size,
            "audio_stats": stats.to_dict() if stats is not None else None,
            "class_names": list(ds.labels.names), "class_mids": list(ds.labels.mids)}


# ------------------------------------------------------------------------------------------------------------
# fine-tuning
# ------------------------------------------------------------------------------------------------------------
MODE_MODALITIES = {"multimodal": ("audio", "video"), "audioonly": ("audio",), "videoonly": ("video",)}


def _finetune_model(cfg: FinetuneConfig, num_classes: int, dcfg) -> nn.Module:
    from avlib.models import create_model, from_pretrained

    if cfg.pretrained:
        from avlib.convert import cavmae_to_finetune
        from avlib.models import CAVMAE, CAVMAEFT

        src = from_pretrained(cfg.pretrained)
        if isinstance(src, CAVMAE):
            model = cavmae_to_finetune(src, num_classes)
        elif isinstance(src, CAVMAEFT):
            model = src
            if model.num_classes != num_classes:
                model.reset_classifier(num_classes)
        else:
            raise TypeError(f"{cfg.pretrained} holds a {type(src).__name__}, not a CAV-MAE model.")
        c = model.cfg
        if (c.audio_length, c.num_mel_bins, c.img_size) != (dcfg.target_length, dcfg.num_mel_bins,
                                                            dcfg.image_size):
            raise ValueError(f"the pretrained model in {cfg.pretrained} takes audio [T={c.audio_length}, "
                             f"F={c.num_mel_bins}] and {c.img_size}-px frames, but the data gives "
                             f"[{dcfg.target_length}, {dcfg.num_mel_bins}] and {dcfg.image_size} px; use the "
                             f"same profile for both (AVLIB_PROFILE).")
        return model.train()
    return create_model(cfg.model, num_classes=num_classes, audio_length=dcfg.target_length,
                        num_mel_bins=dcfg.num_mel_bins, img_size=dcfg.image_size, **cfg.model_overrides)


def _soft_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -(y * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean()  # the reference's CE on soft targets


def finetune(cfg: FinetuneConfig | None = None, on_step: Callable[[dict], None] | None = None,
             val_clips: ClipTensors | None = None, **overrides: Any) -> TrainResult:
    """Fine-tune a classifier in ``cfg.mode`` from ``cfg.pretrained`` (or from scratch).

    Validates on ``val_split`` (middle frame) every ``val_every`` epochs; with ``weight_averaging`` the
    returned model holds the mean of the end-of-epoch weights from epoch ``floor(wa_from * epochs) + 1`` on.
    Writes ``<run_dir>/model`` (with class names and preprocessing for :func:`avlib.predict.predict`) and
    the history.
    """
    from avlib.data.dataset import AVDataset, AVDatasetConfig
    from avlib.models import save_pretrained

    cfg = (cfg or FinetuneConfig()).replace(**overrides)
    loop = _Loop(cfg, f"finetune_{cfg.mode}")
    try:
        root = dataset_root(cfg.data)
        mods = MODE_MODALITIES[cfg.mode]
        dcfg = AVDatasetConfig(train=True, modalities=mods, freqm=cfg.freqm, timem=cfg.timem, noise=cfg.noise,
                               mixup=cfg.mixup, label_smoothing=cfg.label_smoothing,
                               augment_video=cfg.augment_video, label_fraction=cfg.label_fraction)
        ds = AVDataset(root / "datafiles" / f"{cfg.train_split}.json", cfg=dcfg, seed=cfg.seed)
        env.seed_everything(cfg.seed)
        model = _finetune_model(cfg, ds.num_classes, dcfg).to(loop.device)
        if cfg.linear_probe:
            for name, p in model.named_parameters():
                p.requires_grad_(name.startswith("mlp_head."))
        loader, sampler = loop.loader(ds, drop_last=False)
        per_epoch = len(sampler)
        epochs = max(cfg.epochs, math.ceil(cfg.min_steps / per_epoch))
        total = per_epoch * epochs
        opt, sched = optimizer_and_schedule(model, cfg, total, round(cfg.warmup_epochs * per_epoch),
                                            layer_decay=cfg.layer_decay, head_lr_mult=cfg.head_lr_mult)
        wa_first = math.floor(cfg.wa_from * epochs) + 1  # 1-based, as the reference's wa_start
        extra = loop.maybe_resume(model, opt, sched)
        wa_sum: dict[str, torch.Tensor] | None = extra.get("wa_sum")
        wa_count: int = extra.get("wa_count", 0)
        val_file = root / "datafiles" / f"{cfg.val_split}.json" if cfg.val_split else None
        if val_clips is None and val_file is not None and val_file.is_file():
            val_clips = load_split(val_file, modalities=mods, progress=False, cache=True)
        val_every = cfg.val_every or max(1, epochs // 10)
        ddp = loop.wrap(model, find_unused=True)  # e.g. the _a/_v norm sets of blocks_u in multimodal mode
        stop = loop.stop_step(total)
        frac = f" {cfg.label_fraction:.0%}" if cfg.label_fraction else ""
        bar = loop.bar(stop, f"finetune {cfg.mode}{frac}")
        model.train()
        for epoch, batch in loop.batches(loader, sampler, ds, per_epoch, stop):
            audio, video = _to(batch, "audio", loop.device), _to(batch, "video", loop.device)
            y = batch["label"].to(loop.device)
            with autocast(loop.device, loop.amp):
                logits = ddp(audio, video, mode=cfg.mode)
            loss = _soft_ce(logits, y) if cfg.loss == "ce" else F.binary_cross_entropy_with_logits(
                logits.float(), y)
            lr = opt.param_groups[0]["lr"] / opt.param_groups[0]["lr_scale"]
            gnorm = loop.backward_step(ddp, loss, opt, sched)
            acc = float((logits.argmax(-1) == y.argmax(-1)).float().mean())  # vs the (mixed) majority label
            row = loop.log({"step": loop.step, "epoch": epoch, "lr": lr, "loss": _f(loss),
                            "train_acc": acc, "grad_norm": gnorm}, reduce_keys=("loss", "train_acc"))
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", refresh=False)
            if on_step is not None:
                on_step(row)
            if loop.step % per_epoch == 0:  # end of an epoch
                e1 = epoch + 1
                if cfg.weight_averaging and e1 >= wa_first:
                    sd = unwrap(model).state_dict()
                    if wa_sum is None:
                        wa_sum = {k: v.detach().double().clone() for k, v in sd.items()}
                    else:
                        for k, v in sd.items():
                            wa_sum[k] += v.detach().double()
                    wa_count += 1
                if val_clips is not None and (e1 % val_every == 0 or loop.step >= total):
                    m = evaluate(model, val_clips, cfg.mode, amp=loop.amp)
                    loop.history.append({"step": loop.step, "epoch": epoch, "val_acc": m["accuracy"],
                                         "val_macro_f1": m["macro_f1"], "val_mAP": m["mAP"]})
                    bar.set_postfix(loss=f"{row['loss']:.3f}", val_acc=f"{m['accuracy']:.1f}", refresh=False)
            loop.checkpoint_if_due(model, opt, sched, epoch, stop, {"wa_sum": wa_sum, "wa_count": wa_count})
        bar.close()
        final: dict[str, Any] = {}
        if cfg.weight_averaging and wa_count > 0 and loop.step >= total:
            sd = unwrap(model).state_dict()
            unwrap(model).load_state_dict({k: (wa_sum[k] / wa_count).to(sd[k].dtype) for k in sd})
            final["wa_epochs"] = wa_count
        model.eval()
        if val_clips is not None:
            m = evaluate(model, val_clips, cfg.mode, amp=loop.amp)
            final.update(val_acc=m["accuracy"], val_macro_f1=m["macro_f1"], val_mAP=m["mAP"])
            loop.history.append({"step": loop.step, "epoch": epochs - 1, "final_val_acc": m["accuracy"],
                                 "final_val_macro_f1": m["macro_f1"]})
        model_dir = loop.run_dir / "model"
        if loop.must_save(model_dir):
            save_pretrained(unwrap(model), model_dir, extra={
                "mode": cfg.mode, "class_names": list(ds.labels.names), "preprocessing": _preprocessing(dcfg, ds),
                "train_config": cfg.to_dict(), "steps": loop.step, "train_clips": len(ds)})
            _write_history(loop.run_dir, loop.history)
        dist.barrier()
        return TrainResult(model=unwrap(model), history=loop.history, run_dir=loop.run_dir, model_dir=model_dir,
                           config=cfg, steps=loop.step, wall_s=time.time() - loop.t0, final=final)
    finally:
        loop.release()


# ------------------------------------------------------------------------------------------------------------
# label efficiency
# ------------------------------------------------------------------------------------------------------------
def label_efficiency(cfg: FinetuneConfig | None = None, pretrained: str | Path | None = None,
                     fractions: Sequence[float] = (0.1, 0.25, 1.0), test_clips: ClipTensors | None = None,
                     test_split: str = "test", inits: Sequence[str] = ("pretrained", "scratch"),
                     same_steps: bool = True, done: dict[tuple[str, float], dict] | None = None,
                     frame_agg: bool = True) -> list[dict]:
    """Fine-tune from ``pretrained`` and from scratch on each label fraction; evaluate on ``test_split``.

    Returns rows ``{"init", "fraction", "train_clips", "steps", "accuracy", "macro_f1"}`` (percent).
    ``same_steps`` gives every fraction the optimizer steps of the full-data run (``min_steps``), so small
    fractions see their clips for more epochs. ``done[(init, fraction)]`` supplies rows already measured.
    """
    cfg = cfg or FinetuneConfig()
    if "pretrained" in inits and pretrained is None:
        raise ValueError("label_efficiency needs pretrained=<model dir> for the 'pretrained' rows.")
    root = dataset_root(cfg.data)
    cfg = cfg.replace(data=str(root))
    if test_clips is None:
        test_clips = load_split(root / "datafiles" / f"{test_split}.json",
                                frames="all" if frame_agg else "middle", modalities=MODE_MODALITIES[cfg.mode],
                                progress=False, cache=True)
    from avlib.data.datafile import read_datafile

    n_full = len(read_datafile(root / "datafiles" / f"{cfg.train_split}.json"))
    min_steps = math.ceil(n_full / cfg.batch_size) * cfg.epochs if same_steps else 0
    base_dir = _run_dir(cfg, "label_efficiency")
    rows = []
    for frac in fractions:
        for init in inits:
            if done and (init, frac) in done:
                rows.append(done[(init, frac)])
                continue
            run = finetune(cfg.replace(pretrained=str(pretrained) if init == "pretrained" else None,
                                       label_fraction=None if frac >= 1 else frac, min_steps=min_steps,
                                       run_dir=str(base_dir / f"{init}_{frac:g}")))
            m = evaluate(run.model, test_clips, cfg.mode, frame_agg=frame_agg and cfg.mode != "audioonly")
            rows.append({"init": init, "fraction": frac, "labels": f"{frac:.0%}",
                         "train_clips": _train_clips(run), "steps": run.steps, "accuracy": m["accuracy"],
                         "macro_f1": m["macro_f1"]})
    return rows


def _train_clips(run: TrainResult) -> int:
    from avlib.models import load_config

    return int(load_config(run.model_dir)["extra"].get("train_clips", 0))


# ------------------------------------------------------------------------------------------------------------
# the main job
# ------------------------------------------------------------------------------------------------------------
FT_MODES_MAIN = ("multimodal", "audioonly", "videoonly")
LE_FRACTIONS = (0.1, 0.25)  # the main job's label fractions (+ 100 %: the main AV fine-tunes)
_SHORT = {"multimodal": "AV", "audioonly": "A", "videoonly": "V"}


def main_run_dir(profile: str | None = None) -> Path:
    """``runs/<profile>``: where the main job (:func:`run_all`, ``make run``) writes its runs and results."""
    return env.ROOT / "runs" / (profile or env.profile_name())


def main_pretrain_config(out: str | Path | None = None, **changes: Any) -> PretrainConfig:
    """The main job's pretraining config (run_dir ``<out>/pretrain``). Notebooks that call :func:`pretrain`
    with it resume ``make run``'s finished run instead of training again, and get the same model."""
    out = Path(out) if out else main_run_dir()
    return PretrainConfig(run_dir=str(out / "pretrain")).replace(**changes)


def main_finetune_config(init: str = "pretrained", mode: str = "multimodal", out: str | Path | None = None,
                         **changes: Any) -> FinetuneConfig:
    """The main job's fine-tuning config for ``init`` (``pretrained`` | ``scratch``) and ``mode``
    (run_dir ``<out>/finetune_<init>_<AV|A|V>``, pretrained weights from ``<out>/pretrain/model``)."""
    if init not in ("pretrained", "scratch"):
        raise ValueError(f"init must be 'pretrained' or 'scratch', got {init!r}.")
    out = Path(out) if out else main_run_dir()
    src = str(out / "pretrain" / "model") if init == "pretrained" else None
    return FinetuneConfig(mode=mode, pretrained=src,
                          run_dir=str(out / f"finetune_{init}_{_SHORT[mode]}")).replace(**changes)


def main_finetune_row(init: str, mode: str, run: TrainResult, test: ClipTensors) -> dict[str, Any]:
    """One row of the main job's fine-tuning table (``results.json["main"]``) for the fine-tune ``run``
    (``init``, ``mode``): test ``accuracy`` and ``macro_f1`` on the middle frame, and for the modes that see
    video ``accuracy_10frames`` (softmax averaged over all frames). ``test``: ``load_split(..., frames="all")``."""
    row: dict[str, Any] = {"init": init, "fine-tune": _SHORT[mode], "steps": run.steps}
    m1 = evaluate(run.model, test, mode)
    row.update(accuracy=m1["accuracy"], macro_f1=m1["macro_f1"])
    if mode != "audioonly":
        row["accuracy_10frames"] = evaluate(run.model, test, mode, frame_agg=True)["accuracy"]
    return row


def main_label_efficiency(main_rows: Sequence[dict], ft_runs: dict[tuple[str, str], TrainResult],
                          test: ClipTensors, fractions: Sequence[float] = LE_FRACTIONS,
                          out: str | Path | None = None, finetune_cfg: FinetuneConfig | None = None
                          ) -> list[dict]:
    """The main job's label-efficiency table (``results.json["label_efficiency"]``): AV fine-tunes from the
    pretrained weights and from scratch on each of ``fractions`` + 100 % of the labels, evaluated on ``test``
    with 10 frames. The 100 % rows are the main AV fine-tunes (``main_rows`` from :func:`main_finetune_row`,
    ``ft_runs[(init, "multimodal")]`` their runs); the others train in ``<out>/label_efficiency/<init>_<f>``
    (or are resumed there)."""
    out = Path(out) if out else main_run_dir()
    done = {}  # the 100 % rows are the AV fine-tunes of the main table
    for r in main_rows:
        if r["fine-tune"] == "AV":
            done[(r["init"], 1.0)] = {
                "init": r["init"], "fraction": 1.0, "labels": "100%",
                "train_clips": _train_clips(ft_runs[(r["init"], "multimodal")]), "steps": r["steps"],
                "accuracy": r.get("accuracy_10frames", r["accuracy"]), "macro_f1": r["macro_f1"]}
    cfg = (finetune_cfg or FinetuneConfig()).replace(mode="multimodal", run_dir=str(out / "label_efficiency"))
    return label_efficiency(cfg, pretrained=main_finetune_config("pretrained", "multimodal", out).pretrained,
                            fractions=sorted(set(fractions) | {1.0}), test_clips=test, done=done)


def run_all(profile: str | None = None, out_dir: str | Path | None = None,
            fractions: Sequence[float] = LE_FRACTIONS, device: str | None = None, progress: bool = True,
            figures: bool = True, pretrain_cfg: PretrainConfig | None = None,
            finetune_cfg: FinetuneConfig | None = None) -> dict[str, Any]:
    """The main job (``make run``): generate the data -> pretrain -> fine-tune AV / A / V from the pretrained
    weights and from scratch -> label efficiency -> evaluate on ``test`` (modality ablation, frame
    aggregation, retrieval) -> figures and ``results.md`` / ``results.json`` under ``out_dir``.

    Returns the results dict (tables as lists of rows, goal checks, wall time). Existing runs are resumed.
    """
    from avlib.data.orchestra import generate

    t0 = time.time()
    if profile is not None:
        import os

        os.environ["AVLIB_PROFILE"] = profile
    prof = env.profile()
    out = Path(out_dir) if out_dir else main_run_dir(prof.name)
    info = dist.init_distributed(env.pick_device(device))
    root = Path(generate()) if info.is_main else None
    dist.barrier()
    root = root or Path(generate())  # other ranks: the data is there now
    common = dict(data=str(root), device=device, progress=progress)
    pcfg = (pretrain_cfg or main_pretrain_config(out)).replace(run_dir=str(out / "pretrain"), **common)
    fcfg = (finetune_cfg or FinetuneConfig()).replace(**common)
    timings: dict[str, float] = {}

    t = time.time()
    pre = pretrain(pcfg)
    timings["pretrain"] = time.time() - t
    test = load_split(root / "datafiles" / "test.json", frames="all", progress=progress, cache=True)

    main_rows, ft_runs = [], {}
    for init in ("pretrained", "scratch"):
        for mode in FT_MODES_MAIN:
            t = time.time()
            main = main_finetune_config(init, mode, out)
            run = finetune(fcfg.replace(mode=mode, pretrained=main.pretrained, run_dir=main.run_dir))
            timings[f"finetune {init} {_SHORT[mode]}"] = time.time() - t
            ft_runs[(init, mode)] = run
            main_rows.append(main_finetune_row(init, mode, run, test))

    t = time.time()
    le_rows = main_label_efficiency(main_rows, ft_runs, test, fractions, out, fcfg)
    timings["label efficiency"] = time.time() - t

    t = time.time()
    av = ft_runs[("pretrained", "multimodal")].model
    ablation = evaluate_ablation = {}
    if info.is_main:
        from avlib.evaluate import modality_ablation, retrieval

        evaluate_ablation = modality_ablation(av, test, frame_agg=True)
        ablation = [{"test input": m, "meaning": _ABLATION_TEXT[m], "accuracy": r["accuracy"],
                     "macro_f1": r["macro_f1"]} for m, r in evaluate_ablation.items()]
        ret = retrieval(pre.model, test)
        ret_rows = [{"direction": d, **{k: v for k, v in ret[d].items()}} for d in ("a2v", "v2a")]
    timings["evaluation"] = time.time() - t

    results: dict[str, Any] = {"profile": prof.name, "dataset": str(root), "runs": str(out),
                               "main": main_rows, "ablation": ablation, "label_efficiency": le_rows}
    if info.is_main:
        results["retrieval"] = ret_rows
        results["goals"] = _goals(main_rows, le_rows, fractions)
        if figures:
            t = time.time()
            results["figures"] = _figures(out / "figures", pre, ft_runs, test, evaluate_ablation, le_rows,
                                          ret)
            timings["figures"] = time.time() - t
        results["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
        results["wall_s"] = round(time.time() - t0, 1)
        (out / "results.json").write_text(json.dumps(to_plain(results), indent=2) + "\n")
        (out / "results.md").write_text(results_markdown(results))
    dist.barrier()
    return results


_ABLATION_TEXT = {
    "multimodal": "audio + video", "audioonly": "audio only, audio-stream norms",
    "videoonly": "video only, video-stream norms", "missingaudioonly": "audio only, (joint + audio) / 2",
    "missingvideoonly": "video only, (joint + video) / 2"}


def _goals(main_rows: list[dict], le_rows: list[dict], fractions: Sequence[float]) -> dict[str, Any]:
    """The course's targets, checked on the measured numbers."""
    acc = {(r["init"], r["fine-tune"]): r.get("accuracy_10frames", r["accuracy"]) for r in main_rows}
    av, a, v = (acc[("pretrained", m)] for m in ("AV", "A", "V"))
    goals = {"AV accuracy >= 90 %": {"value": av, "met": av >= 90},
             "AV > audio-only > video-only": {"value": [av, a, v], "met": av > a > v}}
    f = min(fractions) if fractions else None
    if f is not None:
        le = {(r["init"], r["fraction"]): r["accuracy"] for r in le_rows}
        gap = le[("pretrained", f)] - le[("scratch", f)]
        goals[f"pretrained - scratch >= 5 points at {f:.0%} labels"] = {"value": gap, "met": gap >= 5}
    return goals


def results_markdown(results: dict[str, Any]) -> str:
    """The results of :func:`run_all` as markdown tables."""
    from avlib.evaluate import format_table

    parts = [f"# Results ({results['profile']} profile, test split)\n"]
    parts += ["## Fine-tuned models (accuracy %, middle frame; 10 frames = frame aggregation)\n",
              format_table(results["main"], ["init", "fine-tune", "steps", "accuracy", "accuracy_10frames",
                                             "macro_f1"]), ""]
    if results.get("ablation"):
        parts += ["## Modality ablation of the pretrained AV model (10 frames where video is used)\n",
                  format_table(results["ablation"]), ""]
    parts += ["## Label efficiency (AV, 10 frames)\n",
              format_table(results["label_efficiency"], ["init", "labels", "train_clips", "steps", "accuracy",
                                                         "macro_f1"]), ""]
    if results.get("retrieval"):
        parts += ["## Retrieval with the pretrained model (R@k in %)\n",
                  format_table(results["retrieval"]), ""]
    if results.get("goals"):
        parts += ["## Goals\n", format_table([{"goal": k, "value": _fmt(g["value"]), "met": "yes" if g["met"]
                                               else "NO"} for k, g in results["goals"].items()]), ""]
    if results.get("timings_s"):
        parts += [f"Wall time: {results.get('wall_s', 0):.0f} s (" +
                  ", ".join(f"{k} {v:.0f} s" for k, v in results["timings_s"].items()) + ")", ""]
    return "\n".join(parts) + "\n"


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.1f}"
    if isinstance(x, list | tuple):
        return " / ".join(_fmt(v) for v in x)
    return str(x)


def _figures(fig_dir: Path, pre: TrainResult, ft_runs: dict, test: ClipTensors, ablation: dict,
             le_rows: list[dict], ret: dict) -> list[str]:
    """Save the course's figures; return their paths."""
    from avlib import metrics as M
    from avlib import plots as P

    fig_dir.mkdir(parents=True, exist_ok=True)
    figs = {}
    figs["pretrain_curves"] = P.plot_history(pre.history, title="pretraining")
    av_run = ft_runs[("pretrained", "multimodal")]
    figs["finetune_curves"] = P.plot_history(av_run.history, title="fine-tuning (AV, pretrained)")
    model = pre.model
    dev = next(model.parameters()).device
    a, v = test.audio[:1].to(dev), test.middle_frame()[:1].to(dev)
    na, nv = _mask_noise(model, 0, 0, 1, 0, 1)
    with torch.no_grad():
        out = model(a, v, noise_a=na.to(dev), noise_v=nv.to(dev))
    figs["inpainting"] = P.plot_inpainting(a[0], v[0], out.pred_a[0], out.pred_v[0], out.mask_a[0],
                                           out.mask_v[0], norm_pix=model.cfg.norm_pix_loss,
                                           title=test.video_ids[0])
    labels = test.targets
    names = test.class_names
    figs["similarity"] = P.plot_similarity(ret["sim"], labels, names)
    figs["embeddings"] = P.plot_embeddings({"audio": ret["emb_a"], "video": ret["emb_v"]}, labels, names,
                                           title="pretrained embeddings (PCA)")
    probs = _probs(av_run.model, test)
    figs["confusion"] = P.plot_confusion(M.confusion_matrix(probs, test.labels, len(names)), names,
                                         title="AV model (pretrained), test")
    figs["retrieval_strip"] = P.plot_retrieval_strip(ret["sim"], 0, test.middle_frame(), k=5, labels=labels,
                                                     class_names=names, query_image=test.audio[0],
                                                     title="audio -> video retrieval")
    figs["ablation"] = P.plot_bars({"AV model (pretrained)": {m: r["accuracy"] for m, r in ablation.items()}},
                                   title="modality ablation")
    figs["label_efficiency"] = P.plot_label_efficiency(le_rows)
    paths = []
    for name, fig in figs.items():
        p = fig_dir / f"{name}.png"
        fig.savefig(p, dpi=110)
        paths.append(str(p))
    return paths


def _probs(model: nn.Module, clips: ClipTensors) -> torch.Tensor:
    from avlib.evaluate import predict_scores

    multi = clips.video is not None and clips.video.ndim == 5
    return predict_scores(model, clips, "multimodal", frame_agg=multi)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m avlib run [--profile P] [--out DIR] [--fractions 0.1,0.25] [--device D]``: the main job."""
    p = argparse.ArgumentParser(prog="python -m avlib run", description=run_all.__doc__.split("\n\n")[0])
    p.add_argument("--profile", choices=env.PROFILES, default=None, help="default: $AVLIB_PROFILE or course")
    p.add_argument("--out", default=None, help="output folder (default: runs/<profile>)")
    p.add_argument("--fractions", default=",".join(f"{f:g}" for f in LE_FRACTIONS),
                   help="label fractions for the label-efficiency table")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(list(argv) if argv is not None else None)
    s = env.setup(args.seed, device=args.device, profile_name_=args.profile, verbose=dist.is_main())
    fractions = [float(x) for x in args.fractions.split(",") if x.strip()]
    res = run_all(s.profile.name, args.out, fractions, args.device, progress=not args.no_progress,
                  pretrain_cfg=PretrainConfig(seed=args.seed), finetune_cfg=FinetuneConfig(seed=args.seed))
    if dist.is_main():
        print(results_markdown(res))
        print(f"results and figures: {res['runs']}")
    dist.cleanup()
    return 0
