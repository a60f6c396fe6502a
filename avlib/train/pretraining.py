"""Self-supervised CAV-MAE pretraining: masked reconstruction of both modalities + audio-visual InfoNCE."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avlib import distributed as dist
from avlib import env
from avlib.checkpoint import unwrap
from avlib.evaluate import ClipTensors, autocast, load_split
from avlib.train.configs import PretrainConfig, TrainResult
from avlib.train.loop import _f, _Loop, _preprocessing, _step_seed, _to, _write_history, resolve_dataset
from avlib.train.optim import optimizer_and_schedule

__all__ = ["pretrain", "pretrain_model", "pretrain_snapshots", "pretrain_losses"]


def _pretrain_datasets(cfg: PretrainConfig, root: Path):
    from avlib.data.cache import open_dataset
    from avlib.data.dataset import AVDatasetConfig

    dcfg = AVDatasetConfig(train=True, noise=cfg.noise, augment_video=cfg.augment_video)
    parts = [open_dataset(root / "datafiles" / f"{s}.json", dcfg, cfg.seed + i, cfg.cache, cfg.progress,
                          workers=cfg.num_workers) for i, s in enumerate(cfg.splits)]
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


def _pretrain_loss(model: nn.Module, out, center: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, loss_c, c_acc)``: the model's MAE terms plus the contrastive term, computed once here from the
    model's float32 pooled embeddings (the forward ran with ``contrastive=False``), outside autocast (in bf16
    the cosine logits / 0.05 are quantised to steps of 0.125, which hides the small differences between clips
    early in training) and, on several processes, against all-gathered negatives (so it equals the
    single-process value on the global batch)."""
    m = unwrap(model)
    with torch.autocast(out.pooled_a.device.type, enabled=False):
        l_c, acc = dist.info_nce_all_gather(out.pooled_a, out.pooled_v, m.temperature, m.cfg.bidirectional_contrast,
                                            center=center)
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
                    noise_a=na.to(dev), noise_v=nv.to(dev), contrastive=False)
            loss, loss_c, c_acc = _pretrain_loss(m, out, cfg.contrast_center)
        vals = {"loss": loss, "loss_mae_a": out.loss_mae_a, "loss_mae_v": out.loss_mae_v,
                "loss_c": loss_c, "c_acc": c_acc}
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
        root = resolve_dataset(cfg.data)
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
                          noise_a=noise_a.to(loop.device), noise_v=noise_v.to(loop.device), contrastive=False)
                loss, loss_c, c_acc = _pretrain_loss(model, out, cfg.contrast_center)
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
