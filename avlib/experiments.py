"""The course's main job (``make run`` = ``python -m avlib run``): generate the data, pretrain, fine-tune AV / A / V
from the pretrained weights and from scratch, label efficiency, evaluation, figures and ``results.md`` /
``results.json``. Sits above :mod:`avlib.train` and :mod:`avlib.evaluate`.

::

    results = run_all("course")                                      # = make run
"""

from __future__ import annotations

import argparse
import json
import math
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
from avlib.train import FinetuneConfig, PretrainConfig, TrainResult, finetune, label_efficiency, pretrain
from avlib.train.finetuning import _train_clips
from avlib.train.pretraining import _mask_noise

__all__ = ["FT_MODES_MAIN", "MAIN_RUNS", "LE_FRACTIONS", "COURSE_RECIPE", "PRETRAIN_RECIPE", "main_run_dir",
           "main_pretrain_config", "main_finetune_config", "main_finetune_row", "main_finetunes",
           "main_label_efficiency", "run_all", "summary", "goals", "verdicts", "results_markdown", "main"]


FT_MODES_MAIN = ("multimodal", "audioonly", "videoonly")
MAIN_RUNS = (("pretrained", "multimodal"), ("pretrained", "audioonly"), ("pretrained", "videoonly"),
             ("scratch", "multimodal"), ("probe", "multimodal"))  # (init, mode) of the main table's models
LE_FRACTIONS = (0.1,)  # the main job's label fractions (+ 100 %: the main AV fine-tunes)
_SHORT = {"multimodal": "AV", "audioonly": "A", "videoonly": "V"}
# The main job's fine-tuning recipe for a budget of about 300 steps, measured on the course data (AV, test,
# 10 frames): the reference's lr 2e-4 with mixup 0.5 (made for 10+ epochs of AudioSet; weight averaging off) gave
# 38 % after 156 steps on the former 128 x 400 inputs; without mixup, lr 5e-4 gave 72 % and lr 1e-3 67 % after
# 312 steps from the same pretrained weights (from scratch, lr 1e-3: 61 %).
COURSE_RECIPE: dict[str, Any] = {"lr": 5e-4, "mixup": 0.0, "weight_averaging": False}
# Pretraining: the reference's recipe with both InfoNCE directions. Batch-centred InfoNCE (contrast_center) was
# measured too and stays off: it lifts in-batch accuracy of a contrastive-only run, but in full pretraining it
# neither made retrieval work nor helped fine-tuning (AV 50 % test vs 72 %).
PRETRAIN_RECIPE: dict[str, Any] = {"bidirectional_contrast": True}


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
    :data:`COURSE_RECIPE` (SpecAugment's frequency mask scaled to the profile's mel bins)."""
    if init not in ("pretrained", "scratch", "probe"):
        raise ValueError(f"init must be 'pretrained', 'scratch' or 'probe', got {init!r}.")
    out = Path(out) if out else main_run_dir()
    src = None if init == "scratch" else str(out / "pretrain" / "model")
    freqm = round(48 * env.profile().num_mel_bins / 128)  # the reference: 48 of 128 bins
    return FinetuneConfig(mode=mode, pretrained=src, linear_probe=init == "probe", freqm=freqm,
                          run_dir=str(out / f"finetune_{init}_{_SHORT[mode]}"), **COURSE_RECIPE
                          ).replace(**changes)


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
    (or are resumed there) for as many steps as the 100 % run."""
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
                            test_clips=test, done=done)


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
        raise ValueError(f"run_all(profile={profile!r}) but AVLIB_PROFILE selects {env.profile_name()!r}: "
                         f"set AVLIB_PROFILE={profile} (python -m avlib run --profile does it).")
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
_BASELINE_NAMES = {"audio": "audio LR", "video": "video LR", "fusion": "late fusion LR"}


def summary(main_rows: Sequence[dict], le_rows: Sequence[dict], base: dict, ret: dict,
            fractions: Sequence[float] = LE_FRACTIONS) -> dict[str, Any]:
    """The headline numbers (percent) of a main-job run: ``test`` / ``val`` accuracy of every model and
    baseline, ``label_efficiency_<f>`` and ``retrieval_r5`` (the keys of ``results/course-cpu.json``).
    Video-using models count with 10-frame aggregation."""
    out: dict[str, Any] = {}
    for split, pre in (("test", ""), ("val", "val_")):
        acc = {}
        for r in main_rows:
            name = {"pretrained": r["fine-tune"], "scratch": f"{r['fine-tune']}_scratch",
                    "probe": f"{r['fine-tune']}_probe"}[r["init"]]
            if f"{pre}accuracy" in r:
                acc[name] = round(r.get(f"{pre}accuracy_10frames", r[f"{pre}accuracy"]), 1)
        bl = {_BASELINE_NAMES[k]: round(v[split], 1) for k, v in base.items() if k in _BASELINE_NAMES}
        if bl:
            best = max(bl, key=bl.get)
            acc.update(baselines=bl, baseline_best=bl[best], baseline_best_name=best)
        if "chance" in base:
            acc["chance"] = round(base["chance"][split], 1)
        out[split] = acc
    for f in fractions:
        le = {r["init"]: round(r["accuracy"], 1) for r in le_rows if abs(r["fraction"] - f) < 1e-9}
        out[f"label_efficiency_{round(100 * f)}"] = le
    if ret:
        out["retrieval_r5"] = {"a2v": round(ret["a2v"]["R@5"], 1), "v2a": round(ret["v2a"]["R@5"], 1),
                               "chance": round(100 * min(5, ret["n"]) / ret["n"], 1)}
        out["test_clips"] = int(ret["n"])
    return out


def goals(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The course's targets (issue 12), checked on the measured numbers: ``{goal: {"value", "met"}}``."""
    t = results["test"]
    av, a, v = t["AV"], t["A"], t["V"]
    g = {"AV test accuracy >= 85 %": (av, av >= 85)}
    if "baseline_best" in t:
        g["AV >= best simple baseline + 5"] = (round(av - t["baseline_best"], 1), av >= t["baseline_best"] + 5)
    g["AV >= A + 5 and AV >= V + 5"] = ([av, a, v], av >= a + 5 and av >= v + 5)
    g["V >= 40 %"] = (v, v >= 40)
    le = results.get("label_efficiency_10", {})
    if {"pretrained", "scratch"} <= set(le):
        gap = round(le["pretrained"] - le["scratch"], 1)
        g["pretrained - scratch >= 10 at 10 % labels"] = (gap, gap >= 10)
    if "AV_scratch" in t:
        gap = round(av - t["AV_scratch"], 1)
        g["pretrained - scratch >= 3 with all labels"] = (gap, gap >= 3)
    if "AV_probe" in t:
        g["full fine-tuning >= linear probe"] = ([av, t["AV_probe"]], av >= t["AV_probe"])
    r = results.get("retrieval_r5")
    if r:
        g["retrieval R@5 >= 5x chance (a2v, v2a)"] = ([r["a2v"], r["v2a"]],
                                                      min(r["a2v"], r["v2a"]) >= 5 * r["chance"])
    return {k: {"value": val, "met": bool(ok)} for k, (val, ok) in g.items()}


def verdicts(results: dict[str, Any]) -> list[str]:
    """Sentences about a main-job run, written from its numbers (the README and notebooks print them)."""
    t, v = results["test"], results["val"]
    n = results.get("test_clips")
    out = []

    def noise(acc: float) -> float:  # about two standard errors of an accuracy on n clips, in points
        return 200 * math.sqrt(max(acc, 1.0) / 100 * (1 - min(acc, 99.0) / 100) / n) if n else 0.0

    def compare(d: float, acc: float) -> str:
        band = noise(acc)
        return f"{d:+.1f} points" + (f", within the ±{band:.1f}-point noise of {n} test clips" if abs(d) < band
                                     else f", beyond the ±{band:.1f}-point noise of {n} test clips" if n else "")

    if "baseline_best" in t:
        d = t["AV"] - t["baseline_best"]
        out.append(f"On test the AV model scores {t['AV']:.1f} %, {abs(d):.1f} points "
                   f"{'above' if d >= 0 else 'below'} the best simple baseline ({t['baseline_best_name']}, "
                   f"{t['baseline_best']:.1f} %); chance is {t['chance']:.1f} %.")
    both = t["AV"] - max(t["A"], t["V"])
    out.append(f"Audio alone gives {t['A']:.1f} % and video alone {t['V']:.1f} %; against the better single "
               f"modality the AV model is at {compare(both, t['AV'])}, so "
               + ("both modalities pay." if both >= 5 else "the second modality adds nothing measurable."))
    if "AV_scratch" in t:
        d = t["AV"] - t["AV_scratch"]
        out.append(f"With all labels, pretrained {t['AV']:.1f} % vs {t['AV_scratch']:.1f} % from scratch "
                   f"({compare(d, t['AV'])}).")
    le = results.get("label_efficiency_10", {})
    if {"pretrained", "scratch"} <= set(le):
        d = le["pretrained"] - le["scratch"]
        out.append(f"With 10 % of the labels, pretrained {le['pretrained']:.1f} % vs scratch "
                   f"{le['scratch']:.1f} % ({compare(d, le['pretrained'])}).")
    if "AV_probe" in t:
        d = t["AV"] - t["AV_probe"]
        out.append(f"Full fine-tuning {'beats' if d >= 0 else 'loses to'} a linear probe on the frozen "
                   f"pretrained encoder: {t['AV']:.1f} % vs {t['AV_probe']:.1f} % ({compare(d, t['AV'])}).")
    r = results.get("retrieval_r5")
    if r:
        k = min(r["a2v"], r["v2a"]) / max(r["chance"], 1e-9)
        out.append(f"Held-out retrieval R@5 is {r['a2v']:.1f} % (audio->video) and {r['v2a']:.1f} % "
                   f"(video->audio) against a chance of {r['chance']:.1f} %: "
                   + ("the contrastive half learned which sound goes with which picture."
                      if k >= 5 else f"only {k:.1f}x chance, so the contrastive half learned little."))
    gap = v["AV"] - t["AV"]
    out.append(f"The AV model scores {v['AV']:.1f} % on val (the training domain) and {t['AV']:.1f} % on test "
               f"(unseen melodies, rhythms and picture style): test is {abs(gap):.1f} points "
               f"{'lower' if gap >= 0 else 'higher'}.")
    return out


def machine() -> dict[str, Any]:
    """What the run ran on (CPU model, cores, threads, bf16 units, GPU)."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": len(env.cpu_slots()), "threads": torch.get_num_threads(),
            "bf16_units": env.cpu_supports_bf16(), "gpu": gpu, "os": platform.platform()}


def versions() -> dict[str, str]:
    """Versions of Python and the packages that decide the numbers."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for pkg in ("avlib", "torch", "torchvision", "torchaudio", "timm", "numpy", "scikit-learn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def results_table(results: dict[str, Any]) -> str:
    """One markdown table: the fine-tuned models, the simple baselines and chance, on val and test."""
    from avlib.evaluate import format_table

    t, v = results.get("test", {}), results.get("val", {})
    names = {"AV": "CAV-MAE fine-tuned, audio + video", "A": "CAV-MAE fine-tuned, audio only",
             "V": "CAV-MAE fine-tuned, video only", "AV_scratch": "same AV model from scratch (no pretraining)",
             "AV_probe": "linear probe on the frozen pretrained AV encoder"}
    steps = {f"{r['fine-tune']}" + ("" if r["init"] == "pretrained" else f"_{r['init']}"): r["steps"]
             for r in results.get("main", [])}
    rows = [{"model": names[k], "steps": steps.get(k, ""), "val": v.get(k), "test": t[k]} for k in names if k in t]
    rows += [{"model": f"baseline: {k}", "steps": "", "val": v.get("baselines", {}).get(k), "test": x}
             for k, x in t.get("baselines", {}).items()]
    if "chance" in t:
        rows.append({"model": "chance", "steps": "", "val": v.get("chance"), "test": t["chance"]})
    return format_table(rows)


def results_markdown(results: dict[str, Any]) -> str:
    """The results of :func:`run_all` as markdown: one table with the models, the baselines and chance on val
    and test, then the ablation, label efficiency, retrieval, goals and the verdict sentences."""
    from avlib.evaluate import format_table

    parts = [f"# Results ({results['profile']} profile)\n",
             "## Models and baselines on the same split (accuracy %; video with 10 frames)\n",
             results_table(results), ""]
    if results.get("ablation"):
        parts += ["## Modality ablation of the pretrained AV model (test, 10 frames where video is used)\n",
                  format_table(results["ablation"]), ""]
    parts += ["## Label efficiency (AV, test, 10 frames)\n",
              format_table(results["label_efficiency"], ["init", "labels", "train_clips", "steps", "accuracy",
                                                         "macro_f1"]), ""]
    if results.get("retrieval"):
        chance = results.get("retrieval_r5", {}).get("chance")
        parts += [f"## Retrieval with the pretrained model on test (R@k in %; chance R@5 = {_fmt(chance)} %)\n",
                  format_table(results["retrieval"]), ""]
    if results.get("goals"):
        parts += ["## Goals\n", format_table([{"goal": k, "value": _fmt(g["value"]), "met": "yes" if g["met"]
                                               else "NO"} for k, g in results["goals"].items()]), ""]
    if results.get("verdicts"):
        parts += ["## What the numbers say\n"] + [f"- {s}" for s in results["verdicts"]] + [""]
    if results.get("phases_s"):
        parts += [f"Wall time: {results.get('wall_s', 0):.0f} s (" +
                  ", ".join(f"{k} {x:.0f} s" for k, x in results["phases_s"].items()) + ")", ""]
    if results.get("per_step_s"):
        parts += ["Seconds per optimisation step: " +
                  ", ".join(f"{k} {x:.2f}" for k, x in results["per_step_s"].items()), ""]
    if results.get("machine"):
        m = results["machine"]
        parts += [f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} threads"
                  + (f", GPU {m['gpu']}" if m.get("gpu") else "") + "; " +
                  ", ".join(f"{k} {x}" for k, x in results.get("versions", {}).items()), ""]
    return "\n".join(parts) + "\n"


RECORD = env.ROOT / "results" / "course-cpu.json"  # the run of record that the README and notebooks quote
README_MARKERS = ("<!-- results: generated from results/course-cpu.json by avlib.experiments.write_readme -->",
                  "<!-- /results -->")


def readme_results(results: dict[str, Any]) -> str:
    """The README's "What `make run` gives" block, written from a results dict (the run of record)."""
    ph = results["phases_s"]
    m = results["machine"]
    train = {k: x for k, x in ph.items() if k.startswith(("pretrain", "finetune", "label"))}
    lines = [f"`AVLIB_PROFILE={results['profile']} make run`, from an empty `data/generated` and `runs/`, on "
             f"{m['cpu']} ({m['cores']} cores, {m['threads']} torch threads): **{results['wall_s'] / 60:.1f} min** "
             f"wall, of which generating the orchestra {ph['data']:.0f} s, the baselines {ph['baselines']:.0f} s, "
             f"training {sum(train.values()):.0f} s and evaluation {ph['evaluation']:.0f} s. Seconds per step: "
             + ", ".join(f"{k} {x:.2f}" for k, x in results["per_step_s"].items()) + ".", "",
             "Accuracy in % (13 classes; video with 10 frames). Every row was computed in the same run, on the same "
             "clips:", "", results_table(results), "",
             f"- Label efficiency (AV, test): with 10 % of the labels pretrained "
             f"{results['label_efficiency_10']['pretrained']:.1f} %, from scratch "
             f"{results['label_efficiency_10']['scratch']:.1f} %.",
             f"- Retrieval on test, R@5: audio→video {results['retrieval_r5']['a2v']:.1f} %, video→audio "
             f"{results['retrieval_r5']['v2a']:.1f} % (chance {results['retrieval_r5']['chance']:.1f} %).", "",
             "The course's targets, checked on these numbers:", "",
             "| goal | value | met |", "|---|---|---|"]
    lines += [f"| {k} | {_fmt(g['value'])} | {'yes' if g['met'] else '**no**'} |" for k, g in results["goals"].items()]
    lines += ["", "What the numbers say (sentences printed by the run itself):", ""]
    lines += [f"- {x}" for x in results["verdicts"]]
    return "\n".join(lines) + "\n"


def write_readme(record: str | Path = RECORD, readme: str | Path = env.ROOT / "README.md") -> bool:
    """Rewrite the README's results block from the run of record; True if the README changed."""
    block = readme_results(json.loads(Path(record).read_text()))
    text = Path(readme).read_text()
    start, end = text.index(README_MARKERS[0]) + len(README_MARKERS[0]), text.index(README_MARKERS[1])
    new = text[:start] + "\n" + block + text[end:]
    Path(readme).write_text(new)
    return new != text


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
