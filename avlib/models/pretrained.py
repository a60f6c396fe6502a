"""Checkpoints: ``save_pretrained(model, dir)`` writes ``model.safetensors`` + ``config.json``;
``from_pretrained(dir)`` rebuilds the model from the JSON config and loads the weights strictly.

``config.json`` holds ``{"format": "avlib.cavmae", "version": 1, "arch": "CAVMAE" | "CAVMAEFT", "num_classes":
K, "config": {...CAVMAEConfig...}, "extra": {...}}``; ``extra`` is free-form JSON (e.g. label names, data
profile).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from avlib.models.cavmae import CAVMAE, CAVMAEFT
from avlib.models.config import CAVMAEConfig

__all__ = ["save_pretrained", "from_pretrained", "load_config", "WEIGHTS_NAME", "CONFIG_NAME"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "avlib.cavmae"


def save_pretrained(model: CAVMAE | CAVMAEFT, directory: str | Path, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed); return it."""
    if not isinstance(model, (CAVMAE, CAVMAEFT)):
        raise TypeError(f"save_pretrained expects a CAVMAE or CAVMAEFT, got {type(model).__name__}.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": 1, "arch": type(model).__name__,
            "num_classes": getattr(model, "num_classes", None), "config": model.cfg.to_dict(),
            "extra": extra or {}}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": FORMAT})
    (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def load_config(directory: str | Path) -> dict:
    """The parsed ``config.json`` of a checkpoint directory (raises a clear error if it is not one)."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory} is not an avlib checkpoint directory "
                                "(save one with avlib.models.save_pretrained).")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an avlib CAV-MAE config (format={meta.get('format')!r}). For "
                         "official CAV-MAE .pth checkpoints use avlib.convert.load_cavmae.")
    return meta


def from_pretrained(directory: str | Path, map_location: str | torch.device = "cpu") -> CAVMAE | CAVMAEFT:
    """Rebuild the model saved by :func:`save_pretrained` and load its weights strictly; returned in
    ``eval()``. The model is built on the meta device and takes the loaded tensors, so loading neither spends
    time on a random initialisation nor draws from torch's global RNG. Its ``extra`` dict: :func:`load_config`."""
    meta = load_config(directory)
    cfg = CAVMAEConfig.from_dict(meta["config"])
    if meta["arch"] not in ("CAVMAE", "CAVMAEFT"):
        raise ValueError(f"{Path(directory) / CONFIG_NAME}: unknown arch {meta['arch']!r}.")
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found next to {CONFIG_NAME}.")
    with torch.device("meta"):  # shapes only: no initialisation, no RNG draws
        model = CAVMAE(cfg) if meta["arch"] == "CAVMAE" else CAVMAEFT(cfg, num_classes=int(meta["num_classes"]))
    model.load_state_dict(load_file(str(weights), device=str(map_location)), strict=True, assign=True)
    return model.to(map_location).eval()
