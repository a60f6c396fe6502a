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
from avlib.train import FinetuneConfig, PretrainConfig, TrainResult, finetune, label_efficiency, pretrain
from avlib.train.finetuning import _train_clips
from avlib.train.pretraining import _mask_noise

__all__ = ["FT_MODES_MAIN", "LE_FRACTIONS", "main_run_dir", "main_pretrain_config", "main_finetune_config",
           "main_finetune_row", "main_label_efficiency", "run_all", "results_markdown", "main"]


FT_MODES_MAIN = ("multimodal", "audioonly", "videoonly")
LE_FRACTIONS = (0.1, 0.25)  # the main job's label fractions (+ 100 %: the main AV fine-tunes)
_SHORT = {"multimodal": "AV", "audioonly": "A", "videoonly": "V"}


def main_run_dir(profile: str | None = None) -> Path:
    """``runs/<profile>``: where the main job (:func:`run_all`, ``make run``) writes its runs and results."""
    return env.ROOT / "runs" / (profile or env.profile_name())


def main_pretrain_config(out: str | Path | None = None, **changes: Any) -> PretrainConfig:
    """The main job's pretraining config (run_dir ``<out>/pretrain``). Notebooks that call :func:`pretrain`
    with it resume ``make run``'s finished run instead of training again, and get the same model."""
    out = Path(out) if out else main_run_dir()
    return PretrainConfig(run_dir=str(out / "pretrain")).replace(**changes)


def main_finetune_config(init: str = "pretrained", mode: str = "multimodal", out: str | Path | None = None,
                         **changes: Any) -> FinetuneConfig:
    """The main job's fine-tuning config for ``init`` (``pretrained`` | ``scratch``) and ``mode``
    (run_dir ``<out>/finetune_<init>_<AV|A|V>``, pretrained weights from ``<out>/pretrain/model``)."""
    if init not in ("pretrained", "scratch"):
        raise ValueError(f"init must be 'pretrained' or 'scratch', got {init!r}.")
    out = Path(out) if out else main_run_dir()
    src = str(out / "pretrain" / "model") if init == "pretrained" else None
    return FinetuneConfig(mode=mode, pretrained=src,
                          run_dir=str(out / f"finetune_{init}_{_SHORT[mode]}")).replace(**changes)


def main_finetune_row(init: str, mode: str, run: TrainResult, test: ClipTensors) -> dict[str, Any]:
    """One row of the main job's fine-tuning table (``results.json["main"]``) for the fine-tune ``run``
    (``init``, ``mode``): test ``accuracy`` and ``macro_f1`` on the middle frame, and for the modes that see
    video ``accuracy_10frames`` (softmax averaged over all frames). ``test``: ``load_split(..., frames="all")``."""
    row: dict[str, Any] = {"init": init, "fine-tune": _SHORT[mode], "steps": run.steps}
    m1 = evaluate(run.model, test, mode)
    row.update(accuracy=m1["accuracy"], macro_f1=m1["macro_f1"])
    if mode != "audioonly":
        row["accuracy_10frames"] = evaluate(run.model, test, mode, frame_agg=True)["accuracy"]
    return row


def main_label_efficiency(main_rows: Sequence[dict], ft_runs: dict[tuple[str, str], TrainResult],
                          test: ClipTensors, fractions: Sequence[float] = LE_FRACTIONS,
                          out: str | Path | None = None, finetune_cfg: FinetuneConfig | None = None
                          ) -> list[dict]:
    """The main job's label-efficiency table (``results.json["label_efficiency"]``): AV fine-tunes from the
    pretrained weights and from scratch on each of ``fractions`` + 100 % of the labels, evaluated on ``test``
    with 10 frames. The 100 % rows are the main AV fine-tunes (``main_rows`` from :func:`main_finetune_row`,
    ``ft_runs[(init, "multimodal")]`` their runs); the others train in ``<out>/label_efficiency/<init>_<f>``
    (or are resumed there)."""
    out = Path(out) if out else main_run_dir()
    done = {}  # the 100 % rows are the AV fine-tunes of the main table
    for r in main_rows:
        if r["fine-tune"] == "AV":
            done[(r["init"], 1.0)] = {
                "init": r["init"], "fraction": 1.0, "labels": "100%",
                "train_clips": _train_clips(ft_runs[(r["init"], "multimodal")]), "steps": r["steps"],
                "accuracy": r.get("accuracy_10frames", r["accuracy"]), "macro_f1": r["macro_f1"]}
    cfg = (finetune_cfg or FinetuneConfig()).replace(mode="multimodal", run_dir=str(out / "label_efficiency"))
    return label_efficiency(cfg, pretrained=main_finetune_config("pretrained", "multimodal", out).pretrained,
                            fractions=sorted(set(fractions) | {1.0}), test_clips=test, done=done)


def run_all(profile: str | None = None, out_dir: str | Path | None = None,
            fractions: Sequence[float] = LE_FRACTIONS, device: str | None = None, progress: bool = True,
            figures: bool = True, pretrain_cfg: PretrainConfig | None = None,
            finetune_cfg: FinetuneConfig | None = None) -> dict[str, Any]:
    """The main job (``make run``): generate the data -> pretrain -> fine-tune AV / A / V from the pretrained
    weights and from scratch -> label efficiency -> evaluate on ``test`` (modality ablation, frame
    aggregation, retrieval) -> figures and ``results.md`` / ``results.json`` under ``out_dir``.

    Returns the results dict (tables as lists of rows, goal checks, wall time). Existing runs are resumed.
    """
    from avlib.data.orchestra import generate

    t0 = time.time()
    if profile is not None:
        import os

        os.environ["AVLIB_PROFILE"] = profile
    prof = env.profile()
    out = Path(out_dir) if out_dir else main_run_dir(prof.name)
    info = dist.init_distributed(env.pick_device(device))
    root = Path(generate()) if info.is_main else None
    dist.barrier()
    root = root or Path(generate())  # other ranks: the data is there now
    common = dict(data=str(root), device=device, progress=progress)
    pcfg = (pretrain_cfg or main_pretrain_config(out)).replace(run_dir=str(out / "pretrain"), **common)
    fcfg = (finetune_cfg or FinetuneConfig()).replace(**common)
    timings: dict[str, float] = {}

    t = time.time()
    pre = pretrain(pcfg)
    timings["pretrain"] = time.time() - t
    test = load_split(root / "datafiles" / "test.json", frames="all", progress=progress, cache=True)

    main_rows, ft_runs = [], {}
    for init in ("pretrained", "scratch"):
        for mode in FT_MODES_MAIN:
            t = time.time()
            main = main_finetune_config(init, mode, out)
            run = finetune(fcfg.replace(mode=mode, pretrained=main.pretrained, run_dir=main.run_dir))
            timings[f"finetune {init} {_SHORT[mode]}"] = time.time() - t
            ft_runs[(init, mode)] = run
            main_rows.append(main_finetune_row(init, mode, run, test))

    t = time.time()
    le_rows = main_label_efficiency(main_rows, ft_runs, test, fractions, out, fcfg)
    timings["label efficiency"] = time.time() - t

    t = time.time()
    av = ft_runs[("pretrained", "multimodal")].model
    ablation = evaluate_ablation = {}
    if info.is_main:
        from avlib.evaluate import modality_ablation, retrieval

        evaluate_ablation = modality_ablation(av, test, frame_agg=True)
        ablation = [{"test input": m, "meaning": _ABLATION_TEXT[m], "accuracy": r["accuracy"],
                     "macro_f1": r["macro_f1"]} for m, r in evaluate_ablation.items()]
        ret = retrieval(pre.model, test)
        ret_rows = [{"direction": d, **{k: v for k, v in ret[d].items()}} for d in ("a2v", "v2a")]
    timings["evaluation"] = time.time() - t

    results: dict[str, Any] = {"profile": prof.name, "dataset": str(root), "runs": str(out),
                               "main": main_rows, "ablation": ablation, "label_efficiency": le_rows}
    if info.is_main:
        results["retrieval"] = ret_rows
        results["goals"] = _goals(main_rows, le_rows, fractions)
        if figures:
            t = time.time()
            results["figures"] = _figures(out / "figures", pre, ft_runs, test, evaluate_ablation, le_rows,
                                          ret)
            timings["figures"] = time.time() - t
        results["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
        results["wall_s"] = round(time.time() - t0, 1)
        (out / "results.json").write_text(json.dumps(to_plain(results), indent=2) + "\n")
        (out / "results.md").write_text(results_markdown(results))
    dist.barrier()
    return results


_ABLATION_TEXT = {
    "multimodal": "audio + video", "audioonly": "audio only, audio-stream norms",
    "videoonly": "video only, video-stream norms", "missingaudioonly": "audio only, (joint + audio) / 2",
    "missingvideoonly": "video only, (joint + video) / 2"}


def _goals(main_rows: list[dict], le_rows: list[dict], fractions: Sequence[float]) -> dict[str, Any]:
    """The course's targets, checked on the measured numbers."""
    acc = {(r["init"], r["fine-tune"]): r.get("accuracy_10frames", r["accuracy"]) for r in main_rows}
    av, a, v = (acc[("pretrained", m)] for m in ("AV", "A", "V"))
    goals = {"AV accuracy >= 90 %": {"value": av, "met": av >= 90},
             "AV > audio-only > video-only": {"value": [av, a, v], "met": av > a > v}}
    f = min(fractions) if fractions else None
    if f is not None:
        le = {(r["init"], r["fraction"]): r["accuracy"] for r in le_rows}
        gap = le[("pretrained", f)] - le[("scratch", f)]
        goals[f"pretrained - scratch >= 5 points at {f:.0%} labels"] = {"value": gap, "met": gap >= 5}
    return goals


def results_markdown(results: dict[str, Any]) -> str:
    """The results of :func:`run_all` as markdown tables."""
    from avlib.evaluate import format_table

    parts = [f"# Results ({results['profile']} profile, test split)\n"]
    parts += ["## Fine-tuned models (accuracy %, middle frame; 10 frames = frame aggregation)\n",
              format_table(results["main"], ["init", "fine-tune", "steps", "accuracy", "accuracy_10frames",
                                             "macro_f1"]), ""]
    if results.get("ablation"):
        parts += ["## Modality ablation of the pretrained AV model (10 frames where video is used)\n",
                  format_table(results["ablation"]), ""]
    parts += ["## Label efficiency (AV, 10 frames)\n",
              format_table(results["label_efficiency"], ["init", "labels", "train_clips", "steps", "accuracy",
                                                         "macro_f1"]), ""]
    if results.get("retrieval"):
        parts += ["## Retrieval with the pretrained model (R@k in %)\n",
                  format_table(results["retrieval"]), ""]
    if results.get("goals"):
        parts += ["## Goals\n", format_table([{"goal": k, "value": _fmt(g["value"]), "met": "yes" if g["met"]
                                               else "NO"} for k, g in results["goals"].items()]), ""]
    if results.get("timings_s"):
        parts += [f"Wall time: {results.get('wall_s', 0):.0f} s (" +
                  ", ".join(f"{k} {v:.0f} s" for k, v in results["timings_s"].items()) + ")", ""]
    return "\n".join(parts) + "\n"


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
    """``python -m avlib run [--profile P] [--out DIR] [--fractions 0.1,0.25] [--device D]``: the main job."""
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
    res = run_all(s.profile.name, args.out, fractions, args.device, progress=not args.no_progress,
                  pretrain_cfg=PretrainConfig(seed=args.seed), finetune_cfg=FinetuneConfig(seed=args.seed))
    if dist.is_main():
        print(results_markdown(res))
        print(f"results and figures: {res['runs']}")
    dist.cleanup()
    return 0
