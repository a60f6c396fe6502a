"""The main job's report: the headline numbers of a run (:func:`summary`), the course's targets
(:func:`goals`), sentences printed from the numbers (:func:`verdicts`), the results table and ``results.md``,
the machine and versions a run records, and the README block written from the run of record
(:func:`write_readme`). :mod:`avlib.experiments` (the job itself) re-exports every name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from avlib import env
from avlib.metrics import accuracy_noise

__all__ = ["summary", "goals", "verdicts", "machine", "versions", "results_table", "results_markdown", "RECORD",
           "README_MARKERS", "readme_results", "write_readme"]

_BASELINE_NAMES = {"audio": "audio LR", "video": "video LR", "fusion": "late fusion LR"}


def summary(main_rows: Sequence[dict], le_rows: Sequence[dict], base: dict, ret: dict,
            fractions: Sequence[float] | None = None) -> dict[str, Any]:
    """The headline numbers (percent) of a main-job run: ``test`` / ``val`` accuracy of every model and
    baseline, ``label_efficiency_<f>`` (for ``fractions``; default: every fraction below 1 in ``le_rows``) and
    ``retrieval_r5`` (the keys of ``results/course-cpu.json``). Video-using models count with 10-frame
    aggregation."""
    if fractions is None:
        fractions = sorted({r["fraction"] for r in le_rows if r["fraction"] < 1})
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

    def noise(acc: float) -> float:  # two binomial standard errors on the n test clips, in points
        return accuracy_noise(acc, n) if n else 0.0

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
               + ("both modalities pay." if both >= 5 else "the second modality adds a little, short of the "
                  "5-point goal." if both >= noise(t["AV"]) else "the second modality adds nothing measurable."))
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
