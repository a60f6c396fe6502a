"""Training: optimiser groups, schedule, the two loops on `ci` data, resume after a kill, weight averaging,
label efficiency and the main job."""

import json
import math

import pytest
import torch

from avlib import env
from avlib import experiments as X
from avlib import train as T
from avlib.losses import contrastive_logits
from avlib.models import create_model
from avlib.train import finetuning, loop, pretraining

SMALL = dict(audio_length=96, img_size=64)


def _pre(ci_data, tmp_path, **kw):
    base = dict(data=str(ci_data), run_dir=str(tmp_path), epochs=1, batch_size=8, amp=False, progress=False,
                splits=("train",), validate=False)
    return T.PretrainConfig(**(base | kw))


def _ft(ci_data, tmp_path, **kw):
    base = dict(data=str(ci_data), run_dir=str(tmp_path), epochs=1, batch_size=8, amp=False, progress=False)
    return T.FinetuneConfig(**(base | kw))


# ------------------------------------------------------------------------------------------------------------
# optimiser and schedule (no data)
# ------------------------------------------------------------------------------------------------------------
def test_warmup_cosine_values():
    s = T.WarmupCosine(warmup=4, total=20, min_ratio=0.1)
    assert [s(i) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert s(4) == 1.0
    assert s(12) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s(20) == pytest.approx(0.1) and s(50) == pytest.approx(0.1)
    after = [s(i) for i in range(4, 21)]
    assert all(a >= b for a, b in zip(after, after[1:], strict=False))  # non-increasing after warm-up


def test_layer_ids_come_from_the_models_group_matcher():
    ids = T.layer_ids(create_model("tiny", num_classes=5, **SMALL))  # depth 5 + 1
    assert ids["patch_embed_a.proj.weight"] == 0 and ids["pos_embed_v"] == 0 and ids["modality_a"] == 0
    assert ids["blocks_a.0.attn.qkv.weight"] == 1 and ids["blocks_v.4.mlp.fc1.bias"] == 5
    assert ids["blocks_u.0.norm1_a.weight"] == 6
    assert ids["mlp_head.1.weight"] == 7 and ids["norm_a.bias"] == 7


def test_param_groups_weight_decay_and_head_lr():
    ft = create_model("tiny", num_classes=5, **SMALL)
    groups = T.param_groups(ft, lr=1e-3, weight_decay=0.05, head_lr_mult=10)
    name = {id(p): n for n, p in ft.named_parameters()}
    seen = [name[id(p)] for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(n for n, p in ft.named_parameters() if p.requires_grad)  # each exactly once
    for g in groups:
        for p in g["params"]:
            n = name[id(p)]
            no_wd = p.ndim == 1 or "pos_embed" in n or "modality" in n
            assert g["weight_decay"] == (0.0 if no_wd else 0.05), n
            assert g["lr"] == pytest.approx(1e-2 if n.startswith("mlp_head.") else 1e-3), n


def test_param_groups_layer_decay():
    ft = create_model("tiny", num_classes=5, **SMALL)  # depth 5 + 1
    groups = T.param_groups(ft, lr=1.0, weight_decay=0.0, layer_decay=0.5, head_lr_mult=10)
    lr_of = {n: g["lr"] for g in groups for n, p in ft.named_parameters() if any(p is q for q in g["params"])}
    assert lr_of["patch_embed_a.proj.weight"] == pytest.approx(0.5 ** 7)
    assert lr_of["blocks_a.0.attn.qkv.weight"] == pytest.approx(0.5 ** 6)
    assert lr_of["blocks_u.0.mlp.fc1.weight"] == pytest.approx(0.5 ** 1)
    assert lr_of["norm.weight"] == pytest.approx(1.0) and lr_of["mlp_head.1.weight"] == pytest.approx(10.0)


def test_frozen_parameters_are_left_out():
    ft = create_model("tiny", num_classes=5, **SMALL)
    for n, p in ft.named_parameters():
        p.requires_grad_(n.startswith("mlp_head."))
    groups = T.param_groups(ft, lr=1e-3, weight_decay=0.05)
    assert sum(len(g["params"]) for g in groups) == 4


def test_resolve_amp_and_config_validation():
    assert T.resolve_amp(False, torch.device("cpu")) is False
    assert T.resolve_amp(True, torch.device("cpu")) is True
    with pytest.raises(ValueError, match="missing"):
        T.FinetuneConfig(mode="missingaudioonly")
    with pytest.raises(FileNotFoundError, match="datafiles"):
        T.resolve_dataset("/nonexistent/place")


def test_contrastive_term_is_float32_under_bf16_autocast():
    """Under bf16 autocast the model's contrastive logits, loss and accuracy are float32 and equal the loop's
    float32 recomputation (in bf16, cos / 0.05 would be quantised to steps of 0.125)."""
    torch.manual_seed(0)
    m = create_model("tiny", **SMALL)
    a, v = torch.randn(4, 96, 128), torch.randn(4, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(a, v, generator=torch.Generator().manual_seed(0))
        loss, loss_c, c_acc = pretraining._pretrain_loss(m, out)
        naive = contrastive_logits(out.latent_c_a.mean(1), out.latent_c_v.mean(1), 0.05)
    assert naive.dtype == torch.bfloat16  # what autocast alone would give
    assert out.contrast_logits.dtype == torch.float32 and out.loss_c_unweighted.dtype == torch.float32
    assert float(out.loss_c_unweighted.detach()) == pytest.approx(float(loss_c.detach()), rel=1e-6)
    assert float(out.c_acc) == pytest.approx(float(c_acc))
    steps = torch.diff(out.contrast_logits.flatten().sort().values)
    assert ((steps > 0) & (steps < 0.01)).any()  # finer than bf16's 0.125 steps
    loss.backward()


# ------------------------------------------------------------------------------------------------------------
# the loops on ci data
# ------------------------------------------------------------------------------------------------------------
def test_pretrain_few_steps_writes_run(ci_data, tmp_path):
    rows = []
    r = T.pretrain(_pre(ci_data, tmp_path, max_steps=3, validate=True), on_step=rows.append)
    assert r.steps == 3 and [row["step"] for row in rows] == [1, 2, 3]
    for k in ("loss", "loss_mae_a", "loss_mae_v", "loss_c", "c_acc", "lr", "grad_norm"):
        assert all(math.isfinite(row[k]) for row in rows), k
    assert rows[0]["lr"] < rows[2]["lr"]  # warming up
    r0 = rows[0]
    w = r.config.contrast_loss_weight
    assert w == 0.01  # the ci profile's weight
    assert r0["loss"] == pytest.approx(r0["loss_mae_a"] + r0["loss_mae_v"] + w * r0["loss_c"], rel=1e-4)
    for f in ("model/config.json", "model/model.safetensors", "history.csv", "history.json",
              "checkpoints/last.pt", "train_config.json"):
        assert (tmp_path / f).is_file(), f
    meta = json.loads((tmp_path / "model" / "config.json").read_text())
    assert meta["arch"] == "CAVMAE" and meta["extra"]["preprocessing"]["target_length"] == 96
    assert json.loads((tmp_path / "history.json").read_text())[:3] == r.history[:3]


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_weights(ci_data, tmp_path):
    """52 train clips / batch 8 = 6 steps per epoch; 8 steps cross an epoch boundary. The killed run dies at
    step 5 (last checkpoint: step 4, mid-epoch) and is resumed to the end."""
    cfg = _pre(ci_data, tmp_path, epochs=2, max_steps=8, checkpoint_every=4)
    straight = T.pretrain(cfg.replace(run_dir=str(tmp_path / "straight")))

    class Killed(Exception):
        pass

    def kill(row):
        if row["step"] == 5:
            raise Killed

    with pytest.raises(Killed):
        T.pretrain(cfg.replace(run_dir=str(tmp_path / "killed")), on_step=kill)
    _assert_unlocked(tmp_path / "killed")  # the failed loop let go of its run_dir
    resumed = T.pretrain(cfg.replace(run_dir=str(tmp_path / "killed")))
    assert resumed.steps == straight.steps == 8
    sa, sb = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    strip = lambda h: [{k: v for k, v in r.items() if k != "time_s"} for r in h]
    assert strip(resumed.history) == strip(straight.history)
    # and a run that is not resumed differs (the check can fail)
    fresh = T.pretrain(cfg.replace(run_dir=str(tmp_path / "other"), seed=1))
    assert not all(torch.equal(sa[k], fresh.model.state_dict()[k]) for k in sa)
    # the snapshot at half the run (6 steps per epoch x 2 epochs -> step 6) is the weights of that step
    snap = (tmp_path / "straight" / "model_step6" / "model.safetensors")
    assert snap.is_file() and (tmp_path / "killed" / "model_step6" / "model.safetensors").is_file()


def test_pretrain_model_is_the_loops_step_0(ci_data, tmp_path):
    cfg = _pre(ci_data, tmp_path, max_steps=0)
    r = T.pretrain(cfg)  # no step: the saved model is the initialisation
    assert r.steps == 0
    start = T.pretrain_model(cfg)
    assert type(start).__name__ == "CAVMAE" and start.cfg.audio_length == 96
    sa, sb = start.state_dict(), r.model.state_dict()
    assert all(torch.equal(sa[k], sb[k].cpu()) for k in sa)
    assert not all(torch.equal(sa[k], T.pretrain_model(cfg.replace(seed=1)).state_dict()[k]) for k in sa)


def test_pretrain_snapshots_lists_model_folders_in_step_order(tmp_path):
    for name in ("model_step12", "model_step6", "model_step3", "model_stepx", "model"):
        (tmp_path / name).mkdir()
        if name != "model_step3":  # no config.json: not a saved model
            (tmp_path / name / "config.json").write_text("{}")
    assert T.pretrain_snapshots(tmp_path) == {6: tmp_path / "model_step6", 12: tmp_path / "model_step12"}
    assert T.pretrain_snapshots(tmp_path / "missing") == {}


def _assert_unlocked(run_dir):
    import fcntl

    with open(run_dir / ".lock", "w") as g:
        fcntl.flock(g, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError if a loop still holds it


def test_run_dir_lock_serialises_processes(tmp_path):
    import fcntl

    held = loop._lock_run_dir(tmp_path)
    with open(tmp_path / ".lock", "w") as g:
        with pytest.raises(BlockingIOError):
            fcntl.flock(g, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.close()
        fcntl.flock(g, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_resume_refuses_a_different_config(ci_data, tmp_path):
    cfg = _pre(ci_data, tmp_path, max_steps=2, checkpoint_every=1)
    T.pretrain(cfg)
    assert T.pretrain(cfg.replace(max_steps=3, progress=True)).steps == 3  # run-time fields may change
    with pytest.raises(ValueError, match=r"different config \(lr: 0.0005 -> 0.001\)"):
        T.pretrain(cfg.replace(lr=1e-3, max_steps=4))
    assert T.pretrain(cfg.replace(lr=1e-3, max_steps=1, resume=False)).steps == 1
    # another architecture: the config is compared before any weight is loaded, so the error names the change
    # (not a state_dict key mismatch)
    with pytest.raises(ValueError, match=r"different config \(model_overrides: \{\} -> \{'stem': 'conv'\}\)"):
        T.pretrain(cfg.replace(lr=1e-3, max_steps=2, model_overrides={"stem": "conv"}))


def test_resume_accepts_the_same_pretrained_weights_by_another_path(ci_data, tmp_path, monkeypatch):
    """The pretrained path is compared relative to the repository, so a moved checkout still resumes."""
    pre = T.pretrain(_pre(ci_data, tmp_path / "pre", max_steps=1))
    cfg = _ft(ci_data, tmp_path / "ft", pretrained=str(pre.model_dir), max_steps=1, weight_averaging=False,
              val_split=None, checkpoint_every=1)
    T.finetune(cfg)
    monkeypatch.setattr(env, "ROOT", tmp_path)  # the "repository" is now tmp_path: the same model, relative
    assert T.finetune(cfg.replace(pretrained=str(tmp_path / "pre" / "model"), max_steps=2)).steps == 2
    with pytest.raises(ValueError, match="pretrained"):
        T.finetune(cfg.replace(pretrained=None, max_steps=3))


@pytest.fixture(scope="module")
def pretrained_dir(ci_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("pre")
    return str(T.pretrain(_pre(ci_data, d, max_steps=2)).model_dir)


@pytest.mark.slow
def test_finetune_from_pretrained_and_weight_averaging(ci_data, tmp_path, pretrained_dir, monkeypatch):
    per_epoch = math.ceil(52 / 8)
    models, snaps = [], []
    build = finetuning._finetune_model
    monkeypatch.setattr(finetuning, "_finetune_model", lambda *a, **k: models.append(build(*a, **k)) or models[-1])

    def snapshot(row):  # after the last step of each epoch: the weights that get averaged
        if row["step"] % per_epoch == 0:
            snaps.append({k: v.detach().clone() for k, v in models[0].state_dict().items()})

    r = T.finetune(_ft(ci_data, tmp_path, pretrained=pretrained_dir, epochs=2, wa_from=0.0), on_step=snapshot)
    assert r.steps == 2 * per_epoch and r.final["wa_epochs"] == 2 and len(snaps) == 2
    for k, v in r.model.state_dict().items():
        avg = (snaps[0][k].double() + snaps[1][k].double()) / 2
        torch.testing.assert_close(v, avg.to(v.dtype), rtol=1e-6, atol=1e-7)
    assert not torch.equal(snaps[0]["mlp_head.1.weight"], snaps[1]["mlp_head.1.weight"])
    meta = json.loads((tmp_path / "model" / "config.json").read_text())
    assert meta["arch"] == "CAVMAEFT" and meta["extra"]["mode"] == "multimodal"
    assert len(meta["extra"]["class_names"]) == r.model.num_classes == 13
    assert "final_val_acc" in r.history[-1] and 0 <= r.final["val_acc"] <= 100


def test_linear_probe_audio_only_trains_only_the_head(ci_data, tmp_path, pretrained_dir):
    from avlib.models import from_pretrained

    before = from_pretrained(pretrained_dir).state_dict()
    r = T.finetune(_ft(ci_data, tmp_path, pretrained=pretrained_dir, mode="audioonly", linear_probe=True,
                       max_steps=2, weight_averaging=False))
    after = r.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k in after)  # the encoder is untouched
    assert r.history[0]["loss"] > 0


def test_finetune_from_scratch_label_fraction(ci_data, tmp_path):
    r = T.finetune(_ft(ci_data, tmp_path, mode="videoonly", label_fraction=0.25, min_steps=3, val_every=1))
    meta = json.loads((tmp_path / "model" / "config.json").read_text())
    assert meta["extra"]["train_clips"] == 13  # 1 of 4 per class
    assert r.steps == 4  # 13 clips = 2 batches per epoch; min_steps 3 -> 2 epochs


@pytest.mark.slow
def test_label_efficiency_table(ci_data, tmp_path, pretrained_dir):
    rows = T.label_efficiency(_ft(ci_data, tmp_path, weight_averaging=False), pretrained=pretrained_dir,
                              fractions=(0.25, 1.0), frame_agg=False)
    assert [(r["init"], r["fraction"]) for r in rows] == [("pretrained", 0.25), ("scratch", 0.25),
                                                          ("pretrained", 1.0), ("scratch", 1.0)]
    assert [r["train_clips"] for r in rows] == [13, 13, 52, 52]
    assert rows[0]["steps"] == rows[2]["steps"] + 1  # the same step budget (7), whole epochs of 2 batches
    assert all(0 <= r["accuracy"] <= 100 for r in rows)


def test_label_efficiency_step_share(ci_data, tmp_path):
    with pytest.raises(ValueError, match="same_steps must be a bool or a share"):
        T.label_efficiency(_ft(ci_data, tmp_path), fractions=(0.25,), inits=("scratch",), same_steps=1.5)
    rows = T.label_efficiency(_ft(ci_data, tmp_path, weight_averaging=False), fractions=(0.25,), inits=("scratch",),
                              same_steps=0.5, frame_agg=False)
    assert rows[0]["steps"] == 4  # half of the full run's 7 steps (4 after rounding), in whole epochs of 2 batches


@pytest.mark.slow
def test_main_job_on_ci(tmp_path, ci_data, monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("AVLIB_DATA", str(Path(ci_data).parent))  # the dataset the fixture made
    res = X.run_all("ci", out_dir=tmp_path, fractions=(0.25,), progress=False)
    assert [(r["init"], r["fine-tune"]) for r in res["main"]] == [(i, X._SHORT[m]) for i, m in X.MAIN_RUNS]
    assert [r["test input"] for r in res["ablation"]] == ["multimodal", "audioonly", "videoonly",
                                                          "missingaudioonly", "missingvideoonly"]
    assert {r["direction"] for r in res["retrieval"]} == {"a2v", "v2a"}
    assert res["wall_s"] > 0 and {"data", "baselines", "pretrain", "evaluation"} <= set(res["phases_s"])
    for split in ("test", "val"):  # the keys of results/course-cpu.json
        assert {"AV", "A", "V", "AV_scratch", "AV_probe", "baseline_best", "baselines", "chance"} <= set(
            res[split])
        assert set(res[split]["baselines"]) == {"audio LR", "video LR", "late fusion LR"}
    assert set(res["label_efficiency_25"]) == {"pretrained", "scratch"}
    assert set(res["retrieval_r5"]) == {"a2v", "v2a", "chance"}
    assert res["machine"]["cores"] >= 1 and res["versions"]["torch"]
    assert len(res["goals"]) == 7 and all(isinstance(g["met"], bool) for g in res["goals"].values())
    assert any("best simple baseline" in v for v in res["verdicts"])
    md = (tmp_path / "results.md").read_text()
    assert "| model | steps | val | test |" in md and "baseline: audio LR" in md and "| chance |" in md
    assert "Wall time" in md and "What the numbers say" in md
    assert json.loads((tmp_path / "results.json").read_text())["profile"] == "ci"
    for name in ("pretrain_curves", "inpainting", "similarity", "embeddings", "confusion", "retrieval_strip",
                 "ablation", "label_efficiency"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 5000, name
    # a notebook's route to the same tables: resume each run with the main job's config, evaluate the same way
    from avlib.evaluate import load_split

    test = load_split(Path(ci_data) / "datafiles" / "test.json", frames="all", progress=False, cache=True)
    val = load_split(Path(ci_data) / "datafiles" / "val.json", frames="all", progress=False, cache=True)
    runs, rows = X.main_finetunes(tmp_path, T.FinetuneConfig(progress=False), test, val)
    for (init, mode), run in runs.items():
        assert run.run_dir == tmp_path / f"finetune_{init}_{X._SHORT[mode]}"
    assert rows == res["main"]
    le = X.main_label_efficiency(rows, runs, test, fractions=(0.25,), out=tmp_path,
                                 finetune_cfg=T.FinetuneConfig(progress=False))
    assert le == res["label_efficiency"]
    assert sorted(p.name for p in (tmp_path / "label_efficiency").iterdir()) == ["pretrained_0.25", "scratch_0.25"]
    with pytest.raises(ValueError, match="AVLIB_PROFILE"):
        X.run_all("course", out_dir=tmp_path)


def test_goals_and_verdicts_follow_the_numbers():
    base = {"audio": {"val": 70.0, "test": 76.0}, "video": {"val": 20.0, "test": 15.0},
            "fusion": {"val": 72.0, "test": 78.0}, "chance": {"val": 7.7, "test": 7.7}}
    rows = [{"init": i, "fine-tune": f, "steps": 10, "accuracy": a, "accuracy_10frames": a, "val_accuracy": a + 5,
             "val_accuracy_10frames": a + 5, "macro_f1": a} for i, f, a in
            [("pretrained", "AV", 90.0), ("pretrained", "A", 80.0), ("pretrained", "V", 45.0),
             ("scratch", "AV", 85.0), ("probe", "AV", 60.0)]]
    le = [{"init": "pretrained", "fraction": 0.1, "accuracy": 70.0}, {"init": "scratch", "fraction": 0.1,
                                                                      "accuracy": 50.0}]
    ret = {"a2v": {"R@5": 20.0}, "v2a": {"R@5": 10.0}, "n": 195}
    res = {"profile": "course", **X.summary(rows, le, base, ret)}
    assert res["test"]["baseline_best"] == 78.0 and res["test"]["baseline_best_name"] == "late fusion LR"
    g = X.goals(res)
    assert all(x["met"] for k, x in g.items() if "retrieval" not in k)
    assert not g["retrieval R@5 >= 5x chance (a2v, v2a)"]["met"]  # v2a 10 % < 5 x 2.6 %
    text = " ".join(X.verdicts(res))
    assert "12.0 points above the best simple baseline" in text and "only 3.8x chance" in text
    res["test"]["AV"] = 70.0
    assert "below the best simple baseline" in " ".join(X.verdicts(res))
    assert not X.goals(res)["AV test accuracy >= 85 %"]["met"]


def test_reloading_a_finished_run_does_not_rewrite_its_model(ci_data, tmp_path):
    cfg = _pre(ci_data, tmp_path, max_steps=2)
    first = T.pretrain(cfg)
    weights = first.model_dir / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = T.pretrain(cfg)
    assert again.steps == 2 and weights.stat().st_mtime_ns == stamp
    sa, sb = first.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    weights.unlink()
    (first.model_dir / "config.json").unlink()
    assert T.pretrain(cfg).steps == 2 and weights.is_file()  # a missing model is written again


def test_main_job_names_stay_importable_from_train():
    """The main job lives in avlib.experiments; `from avlib.train import main_finetune_config` (notebooks, user
    code) still gives the same objects."""
    from avlib.train import FT_MODES_MAIN, main_finetune_config, run_all

    assert main_finetune_config is X.main_finetune_config and run_all is X.run_all
    assert FT_MODES_MAIN == X.FT_MODES_MAIN
    with pytest.raises(AttributeError):
        T.no_such_name  # noqa: B018


def test_main_finetune_configs_follow_the_recipes(tmp_path, monkeypatch):
    """The main job's fine-tunes: the course recipe for every run, video-only trains VIDEO_EPOCH_SCALE times the
    profile's epochs, the probe freezes the encoder and trains PROBE_EPOCH_SHARE of the epochs at PROBE_RECIPE's lr."""
    monkeypatch.setattr(env, "_active_profile", "course")
    epochs = env.profile().finetune_epochs
    av = X.main_finetune_config("pretrained", "multimodal", tmp_path)
    v = X.main_finetune_config("pretrained", "videoonly", tmp_path)
    probe = X.main_finetune_config("probe", "multimodal", tmp_path)
    scratch = X.main_finetune_config("scratch", "multimodal", tmp_path, lr=1e-4)
    assert (av.epochs, av.lr, av.freqm, av.linear_probe) == (epochs, X.COURSE_RECIPE["lr"], 0, False)
    assert av.pretrained == str(tmp_path / "pretrain" / "model") and scratch.pretrained is None
    assert v.epochs == epochs * X.VIDEO_EPOCH_SCALE and scratch.lr == 1e-4
    assert probe.linear_probe and probe.lr == X.PROBE_RECIPE["lr"]
    assert probe.epochs == round(epochs * X.PROBE_EPOCH_SHARE) < epochs
    assert probe.run_dir == str(tmp_path / "finetune_probe_AV")
