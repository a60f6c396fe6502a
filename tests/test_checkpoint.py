"""Checkpoints: complete state round-trip, RNG restore, atomic writes, clear errors."""

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from avlib import checkpoint as C


@dataclasses.dataclass
class Cfg:
    lr: float = 1e-3
    out: Path = Path("runs/x")
    sizes: tuple = (1, 2)


def _objects(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    return model, opt, sched


def _step(model, opt, sched):
    loss = model(torch.randn(3, 4)).pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad()
    sched.step()


def test_roundtrip_restores_everything(tmp_path):
    model, opt, sched = _objects()
    for _ in range(3):
        _step(model, opt, sched)
    g = torch.Generator().manual_seed(5)
    torch.rand(2, generator=g)
    path = C.save_checkpoint(tmp_path / "ck" / "last.pt", model=model, optimizer=opt, scheduler=sched,
                             step=3, epoch=1, config=Cfg(), extra={"history": [{"loss": 1.0}]},
                             generators={"mask": g})
    # what comes next in an uninterrupted run
    _step(model, opt, sched)
    expect_w = [p.clone() for p in model.parameters()]
    expect = random.random(), np.random.rand(), torch.rand(1), torch.rand(1, generator=g)

    model2, opt2, sched2 = _objects(seed=1)  # different init: everything must come from the file
    g2 = torch.Generator()
    state = C.load_checkpoint(path, model2, opt2, sched2, generators={"mask": g2})
    assert state["step"] == 3 and state["epoch"] == 1
    assert state["config"] == {"lr": 1e-3, "out": "runs/x", "sizes": [1, 2]}
    assert state["extra"]["history"] == [{"loss": 1.0}]
    assert sched2.last_epoch == 3
    _step(model2, opt2, sched2)
    for a, b in zip(expect_w, model2.parameters(), strict=True):
        assert torch.equal(a, b)
    got = random.random(), np.random.rand(), torch.rand(1), torch.rand(1, generator=g2)
    assert got[:2] == expect[:2] and torch.equal(got[2], expect[2]) and torch.equal(got[3], expect[3])


def test_loads_with_weights_only(tmp_path):
    model, opt, sched = _objects()
    path = C.save_checkpoint(tmp_path / "c.pt", model=model, optimizer=opt, scheduler=sched, config=Cfg())
    state = torch.load(path, weights_only=True)  # no pickled code
    assert set(state) >= {"model", "optimizer", "scheduler", "rng", "step", "config"}


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    model, opt, _ = _objects()
    path = C.save_checkpoint(tmp_path / "last.pt", model=model, optimizer=opt, step=1)
    before = path.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        C.save_checkpoint(path, model=model, optimizer=opt, step=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_unwrap_and_latest(tmp_path):
    model, _, _ = _objects()
    wrapped = nn.DataParallel(model)
    assert C.unwrap(wrapped) is model
    assert C.latest_checkpoint(tmp_path) is None
    C.save_checkpoint(tmp_path / "checkpoints" / "last.pt", model=wrapped)
    assert C.latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last.pt"
    state = torch.load(C.latest_checkpoint(tmp_path), weights_only=True)
    assert "0.weight" in state["model"]  # saved without the 'module.' prefix


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        C.load_checkpoint(tmp_path / "nope.pt")
    torch.save({"a": torch.zeros(1)}, tmp_path / "w.pt")
    with pytest.raises(ValueError, match="not an avlib training checkpoint"):
        C.load_checkpoint(tmp_path / "w.pt")
