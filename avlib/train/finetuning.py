"""Supervised fine-tuning of a :class:`~avlib.models.CAVMAEFT` (from pretrained weights or from scratch) and the
label-efficiency sweep over label fractions."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avlib import distributed as dist
from avlib import env
from avlib.checkpoint import unwrap
from avlib.evaluate import ClipTensors, autocast, evaluate, load_split
from avlib.models.cavmae import MODE_INPUTS
from avlib.train.configs import FinetuneConfig, TrainResult
from avlib.train.loop import _f, _Loop, _preprocessing, _run_dir, _to, _write_history, resolve_dataset
from avlib.train.optim import optimizer_and_schedule

__all__ = ["finetune", "label_efficiency"]


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
    from avlib.data.cache import open_dataset
    from avlib.data.dataset import AVDatasetConfig
    from avlib.models import save_pretrained

    cfg = (cfg or FinetuneConfig()).replace(**overrides)
    loop = _Loop(cfg, f"finetune_{cfg.mode}")
    try:
        root = resolve_dataset(cfg.data)
        mods = MODE_INPUTS[cfg.mode]
        dcfg = AVDatasetConfig(train=True, modalities=mods, freqm=cfg.freqm, timem=cfg.timem, noise=cfg.noise,
                               mixup=cfg.mixup, label_smoothing=cfg.label_smoothing,
                               augment_video=cfg.augment_video, label_fraction=cfg.label_fraction)
        ds = open_dataset(root / "datafiles" / f"{cfg.train_split}.json", dcfg, cfg.seed, cfg.cache, cfg.progress,
                          workers=cfg.num_workers)
        env.seed_everything(cfg.seed)
        model = _finetune_model(cfg, ds.num_classes, dcfg).to(loop.device)
        if cfg.linear_probe:  # train only the classifier head
            model.requires_grad_(False)
            model.get_classifier().requires_grad_(True)
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
        model.train(not cfg.linear_probe)  # a probe's frozen encoder stays in eval mode (BatchNorm statistics)
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
                     same_steps: bool | float = True, done: dict[tuple[str, float], dict] | None = None,
                     frame_agg: bool = True) -> list[dict]:
    """Fine-tune from ``pretrained`` and from scratch on each label fraction; evaluate on ``test_split``.

    Returns rows ``{"init", "fraction", "train_clips", "steps", "accuracy", "macro_f1"}`` (percent).
    ``same_steps`` gives every fraction the optimizer steps of the full-data run (``min_steps``), so small
    fractions see their clips for more epochs; a number in [0, 1] gives that share of those steps (0: no minimum).
    ``done[(init, fraction)]`` supplies rows already measured.
    """
    cfg = cfg or FinetuneConfig()
    if not 0 <= float(same_steps) <= 1:
        raise ValueError(f"same_steps must be a bool or a share in [0, 1], got {same_steps!r}.")
    if "pretrained" in inits and pretrained is None:
        raise ValueError("label_efficiency needs pretrained=<model dir> for the 'pretrained' rows.")
    root = resolve_dataset(cfg.data)
    cfg = cfg.replace(data=str(root))
    if test_clips is None:
        test_clips = load_split(root / "datafiles" / f"{test_split}.json",
                                frames="all" if frame_agg else "middle", modalities=MODE_INPUTS[cfg.mode],
                                progress=False, cache=True)
    from avlib.data.datafile import read_datafile

    n_full = len(read_datafile(root / "datafiles" / f"{cfg.train_split}.json"))
    min_steps = round(float(same_steps) * math.ceil(n_full / cfg.batch_size) * cfg.epochs)  # 0 if False
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
