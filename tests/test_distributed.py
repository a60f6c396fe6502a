"""DDP helpers: the global batch sampler, and all-gathered contrastive negatives over 2 gloo processes.

What must hold (and is checked): with every rank computing its loss on its own b queries against the W·b
all-gathered keys, and DDP averaging gradients, the gradients equal those of one process on the global batch.
"""

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from avlib import distributed as D


def test_sampler_ranks_partition_the_global_batch():
    single = list(D.GlobalBatchSampler(20, 8, seed=3))
    r0 = list(D.GlobalBatchSampler(20, 8, rank=0, world=2, seed=3))
    r1 = list(D.GlobalBatchSampler(20, 8, rank=1, world=2, seed=3))
    assert len(single) == len(r0) == len(r1) == 2  # 20 // 8, ragged end dropped
    for s, a, b in zip(single, r0, r1, strict=True):
        assert s == a + b  # rank-major concatenation = the single-process batch, in order


def test_sampler_epochs_differ_and_resume_skips():
    s = D.GlobalBatchSampler(32, 4, seed=0)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert e0 != e1 and sorted(sum(e0, [])) == list(range(32))
    s.set_epoch(1, start_batch=3)
    assert len(s) == 5 and list(s) == e1[3:]


def test_sampler_no_shuffle_keeps_order_and_ragged_end():
    s = D.GlobalBatchSampler(10, 4, shuffle=False, drop_last=False)
    assert list(s) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    halves = [list(D.GlobalBatchSampler(10, 4, rank=r, world=2, shuffle=False, drop_last=False))
              for r in (0, 1)]
    assert halves[0][-1] == [8] and halves[1][-1] == [9]


@pytest.mark.parametrize(("n", "global_batch", "world"), [(13, 4, 2), (15, 4, 2), (10, 8, 4), (1300, 48, 8),
                                                          (11, 4, 4)])
def test_sampler_every_rank_gets_the_same_batches_count(n, global_batch, world):
    """The ragged end is trimmed to a multiple of world (dropped if fewer items than ranks are left): every rank
    yields len(sampler) equal-sized batches, together a prefix of the single-process batch, in order."""
    single = list(D.GlobalBatchSampler(n, global_batch, seed=1, drop_last=False))
    ranks = [D.GlobalBatchSampler(n, global_batch, rank=r, world=world, seed=1, drop_last=False)
             for r in range(world)]
    got = [list(s) for s in ranks]
    assert {len(s) for s in ranks} == {len(g) for g in got} == {len(got[0])}  # the same count everywhere
    rest = n % global_batch
    assert len(got[0]) == n // global_batch + (rest >= world)
    for i, parts in enumerate(zip(*got, strict=True)):
        assert len({len(p) for p in parts}) == 1 and len(parts[0]) >= 1  # equal, non-empty shares
        joined = sum(parts, [])
        assert joined == single[i][:len(joined)] and len(single[i]) - len(joined) < world
    ranks[0].set_epoch(0, start_batch=len(got[0]) - 1)
    assert len(ranks[0]) == 1 and list(ranks[0]) == got[0][-1:]


def test_sampler_clear_errors():
    with pytest.raises(ValueError, match="divisible"):
        D.GlobalBatchSampler(10, 5, world=2)
    with pytest.raises(ValueError, match="lower the batch size"):
        D.GlobalBatchSampler(3, 4)


def test_single_process_helpers_are_identity():
    x = torch.randn(3, 2, requires_grad=True)
    assert D.all_gather_with_grad(x) is x
    assert D.world_size() == 1 and D.rank() == 0 and D.is_main()
    assert float(D.all_reduce_mean(2.5)) == 2.5
    assert D.init_distributed().world_size == 1


# ----------------------------------------------------------------------------------------------------
# 2 processes over gloo
# ----------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.v = nn.Linear(6, 4), nn.Linear(5, 4)

    def forward(self, xa, xv):
        ha = self.a(xa)
        return F.normalize(ha, dim=-1), F.normalize(self.v(xv), dim=-1), ha.pow(2).mean()


def _toy():
    torch.manual_seed(0)
    return Toy()


def _loss(model, xa, xv, offset: int):
    """Local queries (both directions) against all-gathered keys, mean over local rows, + a per-sample mean
    term standing in for the MAE loss."""
    za, zv, per_sample = model(xa, xv)
    all_a, all_v = D.all_gather_with_grad(za), D.all_gather_with_grad(zv)  # [W*b, 4]
    target = torch.arange(len(za)) + offset
    l_c = (F.cross_entropy(za @ all_v.T / 0.1, target) + F.cross_entropy(zv @ all_a.T / 0.1, target)) / 2
    return l_c + per_sample


def _worker(rank: int, world: int, port: int, xa, xv, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = D.init_distributed()
    model = nn.parallel.DistributedDataParallel(_toy())  # averages gradients over ranks in backward
    b = len(xa) // world
    sl = slice(rank * b, (rank + 1) * b)
    _loss(model, xa[sl], xv[sl], offset=rank * b).backward()
    if info.is_main:
        torch.save({n: p.grad for n, p in model.module.named_parameters()}, os.path.join(out_dir, "g.pt"))
    D.cleanup()


@pytest.mark.slow
def test_all_gather_gradients_equal_single_process(tmp_path):
    g = torch.Generator().manual_seed(1)
    xa, xv = torch.randn(8, 6, generator=g), torch.randn(8, 5, generator=g)
    ref = _toy()
    _loss(ref, xa, xv, offset=0).backward()
    mp.spawn(_worker, args=(2, _free_port(), xa, xv, str(tmp_path)), nprocs=2, join=True)
    got = torch.load(tmp_path / "g.pt")
    for n, p in ref.named_parameters():
        torch.testing.assert_close(got[n], p.grad, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# the real pretraining loop: 2 processes vs 1 process on the same global batch
# ---------------------------------------------------------------------------------------------------------
def _pretrain_cfg(data, run_dir):
    from avlib.train import PretrainConfig

    return PretrainConfig(data=str(data), run_dir=str(run_dir), splits=("train",), epochs=1, max_steps=2,
                          batch_size=8, amp=False, progress=False, validate=False, checkpoint_every=0)


def _pretrain_worker(rank: int, world: int, port: int, data: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), AVLIB_PROFILE="ci", AVLIB_DEVICE="cpu")
    torch.set_num_threads(1)
    from avlib.train import pretrain

    r = pretrain(_pretrain_cfg(data, os.path.join(out_dir, "ddp")))
    if rank == 0:
        torch.save({"state": r.model.state_dict(), "history": r.history}, os.path.join(out_dir, "ddp.pt"))
    D.cleanup()


@pytest.mark.slow
def test_ddp_pretraining_equals_one_process_on_the_global_batch(tmp_path, monkeypatch, ci_data):
    """Holds: same batches (rank r gets rows [r*b, (r+1)*b) of each global batch), same masks (global noise
    sliced per rank), contrastive negatives all-gathered, MAE loss a mean over equal per-rank counts, DDP
    averaging -> the same losses and updates as one process, up to float summation order."""
    monkeypatch.setenv("AVLIB_PROFILE", "ci")
    data = ci_data
    mp.spawn(_pretrain_worker, args=(2, _free_port(), str(data), str(tmp_path)), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "ddp.pt")
    from avlib.train import pretrain

    single = pretrain(_pretrain_cfg(data, tmp_path / "single"))
    for a, b in zip(single.history, ddp["history"], strict=True):
        for k in ("loss", "loss_mae_a", "loss_mae_v", "loss_c", "c_acc"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-5), (a["step"], k)
    sd = single.model.state_dict()
    for k, v in ddp["state"].items():
        torch.testing.assert_close(v, sd[k], rtol=1e-4, atol=1e-5, msg=k)


def test_info_nce_all_gather_equals_single_process_loss():
    from avlib.losses import contrastive_accuracy, info_nce

    g = torch.Generator().manual_seed(2)
    a, v = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    for bi in (False, True):
        loss, acc = D.info_nce_all_gather(a, v, 0.05, bi)
        torch.testing.assert_close(loss, info_nce(a, v, 0.05, bi))
        torch.testing.assert_close(acc, contrastive_accuracy(a, v, bi))


# ---------------------------------------------------------------------------------------------------------
# the real fine-tuning loop on 2 processes: a ragged last batch, and equality with one process
# ---------------------------------------------------------------------------------------------------------
# ci train split: 52 clips. label_fraction 0.25 -> 13 clips, batch 4: a last batch of 1 item for 2 ranks (it used
# to leave rank 1 without a batch, and rank 0 waiting forever in DDP's all-reduce). label_fraction 0.5 -> 26
# clips, batch 8: 3 full batches + a last one of 2 items, one per rank, as one process sees it.
_FT_RUNS = {"ragged": dict(label_fraction=0.25, batch_size=4), "equal": dict(label_fraction=0.5, batch_size=8)}


def _finetune_cfg(data, run_dir, name):
    from avlib.train import FinetuneConfig

    return FinetuneConfig(data=str(data), run_dir=str(run_dir), epochs=1, amp=False, progress=False,
                          val_split=None, checkpoint_every=0, weight_averaging=False, **_FT_RUNS[name])


def _finetune_worker(rank: int, world: int, port: int, data: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), AVLIB_PROFILE="ci", AVLIB_DEVICE="cpu")
    torch.set_num_threads(1)
    from avlib.train import finetune

    for name in _FT_RUNS:
        r = finetune(_finetune_cfg(data, os.path.join(out_dir, name), name))
        torch.save({"state": r.model.state_dict(), "history": r.history, "steps": r.steps},
                   os.path.join(out_dir, f"{name}_rank{rank}.pt"))
    D.cleanup()


@pytest.fixture(scope="module")
def ddp_finetune(ci_data, tmp_path_factory):
    """Both fine-tuning runs of _FT_RUNS on 2 gloo processes; fails (instead of hanging) if they do not end."""
    import time

    out = tmp_path_factory.mktemp("ddp_ft")
    ctx = mp.spawn(_finetune_worker, args=(2, _free_port(), str(ci_data), str(out)), nprocs=2, join=False)
    deadline = time.monotonic() + 600
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail("2-process fine-tuning did not finish in 600 s (a rank waiting in DDP's all-reduce?)")
    return out


@pytest.mark.slow
def test_ddp_finetuning_with_a_last_batch_smaller_than_the_ranks_ends(ddp_finetune):
    ranks = [torch.load(ddp_finetune / f"ragged_rank{r}.pt") for r in (0, 1)]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 3  # 13 clips / batch 4: the last clip is left out on 2 ranks
    assert [row["step"] for row in ranks[1]["history"]] == [1, 2, 3]


@pytest.mark.slow
def test_ddp_finetuning_equals_one_process_on_the_global_batch(ddp_finetune, ci_data, monkeypatch):
    """As for pretraining: the same batches (including the last, smaller one), augmentations seeded per item,
    mean losses over equal per-rank counts, DDP averaging -> the same losses and weights as one process."""
    from avlib.train import finetune

    monkeypatch.setenv("AVLIB_PROFILE", "ci")
    ddp = torch.load(ddp_finetune / "equal_rank0.pt")
    single = finetune(_finetune_cfg(ci_data, ddp_finetune / "single", "equal"))
    assert single.steps == ddp["steps"] == 4
    for a, b in zip(single.history, ddp["history"], strict=True):
        for k in ("loss", "train_acc"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-5), (a["step"], k)
    sd = single.model.state_dict()
    for k, v in ddp["state"].items():
        torch.testing.assert_close(v, sd[k], rtol=1e-4, atol=1e-5, msg=k)


def test_centred_info_nce_ignores_a_shared_component():
    """center=True: adding the same vector to every clip's embedding changes nothing (the collapse direction of
    mean-pooled tokens), while the plain loss moves towards log(B)."""
    g = torch.Generator().manual_seed(0)
    a, v = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    shared = 50 * torch.randn(16, generator=g)
    l0, _ = D.info_nce_all_gather(a, v, 0.05, True, center=True)
    l1, _ = D.info_nce_all_gather(a + shared, v + shared, 0.05, True, center=True)
    assert torch.allclose(l0, l1, atol=1e-5)
    plain, _ = D.info_nce_all_gather(a + shared, v + shared, 0.05, True)
    assert abs(plain.item() - math.log(8)) < abs(l0.item() - math.log(8))
