"""The loop skeleton both training loops share (:class:`_Loop`): device and process group, run folder and its
lock, resume, DDP wrapping, the epoch/step iterator, backward step, logging, checkpoints and history files."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from avlib import distributed as dist
from avlib import env
from avlib.checkpoint import latest_checkpoint, read_checkpoint, restore_checkpoint, save_checkpoint
from avlib.train.configs import _Common
from avlib.train.optim import resolve_amp

__all__ = ["resolve_dataset"]


def resolve_dataset(data: str | Path | None) -> Path:
    """A training config's ``data`` -> the dataset folder: ``data`` if given (must hold ``datafiles/``), else
    the profile's generated one (made on first use). The root of a datafile is
    :func:`avlib.data.datafile.dataset_root`."""
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


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, then rename it: readers see the old or the new file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _write_history(run_dir: Path, history: list[dict]) -> None:
    keys = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    w = csv.DictWriter(buf, keys)
    w.writeheader()
    w.writerows(history)
    _write_atomic(run_dir / "history.csv", buf.getvalue())
    _write_atomic(run_dir / "history.json", json.dumps(history, indent=1) + "\n")


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
_RUNTIME_FIELDS = {"data", "run_dir", "device", "num_workers", "cache", "checkpoint_every", "resume", "progress",
                   "max_steps", "compile"}


class _Loop:
    """Device, process group, optimizer, schedule, checkpointing and logging shared by the two loops."""

    def __init__(self, cfg: _Common, name: str) -> None:
        self.cfg = cfg
        self.info = dist.init_distributed(env.pick_device(cfg.device))
        self.device = self.info.device
        self.amp = resolve_amp(cfg.amp, self.device)
        self.run_dir = _run_dir(cfg, name)
        self._lock = None
        if self.info.is_main:
            (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            self._lock = _lock_run_dir(self.run_dir)  # before writing anything there
            _write_atomic(self.run_dir / "train_config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
        self.history: list[dict] = []
        self.step = 0
        self.start_step = 0  # where this call began (> 0 after a resume)
        # sheds torch threads while other jobs keep cores busy: setup()'s governor if it runs, else its own
        self.threads = env.process_governor() or env.ThreadGovernor()
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
        state = read_checkpoint(ck, map_location=self.device)  # compare the configs before loading any weights
        where = lambda k, v: env.display_path(v) if k == "pretrained" and v else v  # noqa: E731 - repo may move
        saved, now = ({k: where(k, v) for k, v in c.items()} for c in (state.get("config") or {}, self.cfg.to_dict()))
        diff = sorted(k for k in now.keys() & saved.keys() if k not in _RUNTIME_FIELDS and now[k] != saved[k])
        if diff:
            raise ValueError(f"{env.display_path(ck)} was written with a different config ({', '.join(diff)}: "
                             f"{', '.join(f'{saved[k]!r} -> {now[k]!r}' for k in diff)}). Use another run_dir, "
                             f"delete that folder, or pass resume=False to start over.")
        restore_checkpoint(state, model, opt, sched)
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
        self.threads.update()
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
