"""Training-state checkpoints: everything needed to stop a run at any step and resume it bit-for-bit.

A checkpoint is one ``torch.save`` file holding the model, optimizer, LR scheduler (and AMP grad scaler)
state dicts, the step and epoch, the run's config (a plain dict) and the random-number-generator states
(python, numpy, torch CPU and CUDA, plus any named ``torch.Generator``). It is written **atomically**: to a
temporary file in the same folder, flushed to disk, then renamed over the old one, so a run killed while
saving leaves the previous checkpoint intact. Every value is a tensor or a plain python type, so it loads with
``torch.load(..., weights_only=True)`` (no pickled code runs when a learner opens a checkpoint).
"""

from __future__ import annotations

import dataclasses
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["atomic_save", "rng_state", "set_rng_state", "unwrap", "save_checkpoint", "read_checkpoint",
           "restore_checkpoint", "load_checkpoint", "latest_checkpoint", "to_plain"]


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj, path)`` via a temporary file + ``os.replace``: the file is old or new, never torn."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def to_plain(x: Any) -> Any:
    """A dataclass / Path / tuple tree as plain python (dicts, lists, str, numbers) for checkpoints, JSON."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: to_plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {str(k): to_plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [to_plain(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, torch.device):
        return str(x)
    return x


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """The state of every global RNG (python, numpy, torch CPU, all CUDA devices) and of named generators."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss),
                  float(np_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    return state


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only if the device count matches)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    for k, g in (generators or {}).items():
        if k in state.get("generators", {}):
            g.set_state(state["generators"][k])


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside ``DistributedDataParallel`` / ``DataParallel`` / ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def save_checkpoint(path: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, scaler: Any = None, step: int = 0, epoch: int = 0,
                    config: Any = None, extra: dict[str, Any] | None = None,
                    generators: dict[str, torch.Generator] | None = None) -> Path:
    """Write a complete training state to ``path`` atomically; return the path.

    ``step`` counts optimizer steps done, ``epoch`` the epoch in progress; ``config`` is a dataclass or dict;
    ``extra`` holds anything else the loop needs on resume (metric history, weight-average buffers, ...).
    """
    m = unwrap(model)
    state = {
        "format": "avlib-checkpoint-1",
        "model": m.state_dict(),
        "model_config": to_plain(getattr(m, "config", None)),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "step": int(step),
        "epoch": int(epoch),
        "config": to_plain(config),
        "rng": rng_state(generators),
        "extra": to_plain(extra or {}),
    }
    return atomic_save(state, path)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The state dict of a checkpoint written by :func:`save_checkpoint`, applied to nothing (see
    :func:`restore_checkpoint`). Raises ``FileNotFoundError`` / ``ValueError`` naming the file if it is missing or
    not an avlib checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass an existing file or resume=False.")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != "avlib-checkpoint-1":
        raise ValueError(f"{path} is not an avlib training checkpoint (written by avlib.checkpoint."
                         f"save_checkpoint); for model weights use avlib.models.from_pretrained.")
    return state


def restore_checkpoint(state: dict[str, Any], model: nn.Module | None = None,
                       optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None, scaler: Any = None,
                       *, restore_rng: bool = True, generators: dict[str, torch.Generator] | None = None
                       ) -> dict[str, Any]:
    """Load a :func:`read_checkpoint` state into the given objects (and the RNGs); return the state."""
    if model is not None:
        unwrap(model).load_state_dict(state["model"])
    if optimizer is not None and state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    if restore_rng:
        set_rng_state(state["rng"], generators)
    return state


def load_checkpoint(path: str | Path, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None, scaler: Any = None,
                    *, restore_rng: bool = True, generators: dict[str, torch.Generator] | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` into the given objects; return its state dict
    (:func:`read_checkpoint`, then :func:`restore_checkpoint`).

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file if it is missing or not an avlib checkpoint.
    """
    return restore_checkpoint(read_checkpoint(path, map_location), model, optimizer, scheduler, scaler,
                              restore_rng=restore_rng, generators=generators)


def latest_checkpoint(run_dir: str | Path, name: str = "last.pt") -> Path | None:
    """``<run_dir>/checkpoints/<name>`` if it exists, else None."""
    p = Path(run_dir) / "checkpoints" / name
    return p if p.is_file() else None
