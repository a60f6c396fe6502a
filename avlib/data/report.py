"""The orchestra's dataset card and two quick baselines (``python -m avlib data-report``).

* :func:`dataset_card` - clips per class and split, durations, domains (soundfont, icon style), how often a
  second instrument plays, occlusion, disk size, and the licences of every asset.
* :func:`baselines` - logistic regression on hand-made features, trained on ``train`` and scored on ``val``
  (the training domain) and ``test`` (unseen melodies, rhythms and picture style):

  - audio: per-bin mean and std of the log-mel filterbank (``avlib.audio.fbank``), 2F values per clip;
  - video: colour histograms of the 10 frames and a 12 x 12 thumbnail of the mean frame.

  Chance is 1/K. The deep models of the course should beat these.
* :func:`contact_sheet` - a PNG of the frames of a few clips per split, to look at.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from avlib.data import orchestra as O


def _load(root: Path) -> tuple[dict, list[dict], list[tuple[str, str]]]:
    cfg_path = root / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{root} holds no complete orchestra (no config.json): generate it with "
                                "`python -m avlib data` (or avlib.data.orchestra.generate()).")
    config = json.loads(cfg_path.read_text())
    metas = [json.loads(line) for line in (root / "clips.jsonl").read_text().splitlines() if line.strip()]
    import csv

    with open(root / "labels.csv", newline="") as f:
        classes = [(r["mid"], r["display_name"]) for r in csv.DictReader(f)]
    return config, metas, classes


def _du(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6


def dataset_card(root: str | Path) -> str:
    """A plain-text (markdown) card of the dataset at ``root``."""
    from avlib.data import scene as S
    from avlib.data import synth

    root = Path(root)
    config, metas, classes = _load(root)
    cfg = config["config"]
    sec = float(cfg["clip_seconds"])
    splits = O.SPLITS
    count = Counter((m["split"], m["label"]) for m in metas)
    lines = [f"# The orchestra - profile `{cfg['profile']}`, seed {cfg['seed']}",
             "",
             f"{len(metas)} clips of {sec:g} s ({len(metas) * sec / 60:.1f} min of audio), "
             f"{len(classes)} classes, "
             f"10 frames of {cfg['frame_size']} x {cfg['frame_size']} px per clip, 16-kHz mono WAV; "
             f"{_du(root):.0f} MB under {root}. Config hash {config['hash'][:12]}.",
             "",
             "| class | " + " | ".join(splits) + " |",
             "|---|" + "---:|" * len(splits)]
    for mid, name in classes:
        lines.append(f"| {name} (`{mid}`) | " + " | ".join(str(count[(s, mid)]) for s in splits) + " |")
    lines.append("| **all** | " + " | ".join(str(sum(m["split"] == s for m in metas)) for s in splits) + " |")
    lines += ["",
              "| split | minutes | soundfonts | icon styles | second instrument | occluded | labels used |",
              "|---|---:|---|---|---:|---:|---|"]
    for s in splits:
        ms = [m for m in metas if m["split"] == s]
        if not ms:
            continue
        sf = ", ".join(f"{k} {v}" for k, v in sorted(Counter(m["soundfont"] for m in ms).items()))
        st = ", ".join(f"{k} {v}" for k, v in sorted(Counter(m["style"] for m in ms).items()))
        second = np.mean([bool(m.get("second")) for m in ms])
        occ = np.mean([m["scene"]["occluded"] for m in ms])
        used = "no (self-supervised)" if s == "unlabeled" else "yes"
        lines.append(f"| {s} | {len(ms) * sec / 60:.1f} | {sf} | {st} | {second:.0%} | {occ:.0%} | {used} |")
    dis = {s: np.mean([bool(m.get("distractor")) for m in metas if m["split"] == s]) for s in splits}
    lines += ["", "The sounding instrument moves with its own notes (size = loudness, height = pitch, jump + flash "
              "= onsets); a silent distractor of another class stands beside it in "
              + ", ".join(f"{v:.0%} of `{s}`" for s, v in dis.items()) + ".",
              "`test` holds out a fifth of the chorales, some rhythm patterns and the icon style(s) "
              f"{', '.join(sorted({m['style'] for m in metas if m['split'] == 'test'}))}, which "
              "`unlabeled`/`train`/`val` never use; soundfonts and programs are shared.", "",
              "## Licences of the material", "",
              "| asset | source | licence |", "|---|---|---|"]
    for name, (pkg, rel, lic) in synth.SOUNDFONTS.items():
        lines.append(f"| soundfont `{name}` | `{pkg}/{rel}` (pip wheel, not copied) | {lic} |")
    for style, info in S.styles().items():
        lines.append(f"| icons `{style}` | {info['package']} {info['version']} ({info['author']}) | "
                     f"{info['license']} |")
    lines.append(f"| melodies | {synth.load_melodies()['source']} | public domain (see data/LICENSES.md) |")
    lines.append("")
    lines.append("Details and attributions: data/LICENSES.md.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------
# features and baselines
# ------------------------------------------------------------------------------------------------------------
def audio_features(root: str | Path, ids: list[str]) -> np.ndarray:
    """Per-bin mean and std of the log-mel filterbank of each clip -> ``[N, 2F]``."""
    import torch

    from avlib import audio as A

    root = Path(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        feats = []
        for vid in ids:
            fb = A.fbank(A.load_wav(root / "audio" / f"{vid}.wav"))  # [T, F]
            feats.append(torch.cat([fb.mean(0), fb.std(0)]).numpy())
    finally:
        torch.set_num_threads(threads)
    return np.stack(feats).astype(np.float32)  # [N, 2F]


def video_features(root: str | Path, ids: list[str], frames: int = O.NUM_FRAMES) -> np.ndarray:
    """Colour histograms (joint 4x4x4 RGB + 16 bins per channel, averaged over the frames) and a 12 x 12 RGB
    thumbnail of the mean frame -> ``[N, 64 + 48 + 432]``."""
    from PIL import Image

    root = Path(root)
    out = []
    for vid in ids:
        imgs = np.stack([np.asarray(Image.open(root / "frames" / f"frame_{i}" / f"{vid}.jpg").convert("RGB"))
                         for i in range(frames)])  # [10, H, W, 3]
        q = (imgs // 64).reshape(frames, -1, 3).astype(np.int64)  # [10, H*W, 3] in 0..3
        joint = np.stack([np.bincount(f[:, 0] * 16 + f[:, 1] * 4 + f[:, 2], minlength=64) for f in q])
        joint = joint.mean(0) / q.shape[1]
        per = np.concatenate([np.histogram(imgs[..., c], bins=16, range=(0, 256))[0] for c in range(3)])
        per = per / imgs[..., 0].size
        thumb = np.asarray(Image.fromarray(imgs.mean(0).astype(np.uint8)).resize((12, 12), Image.BILINEAR))
        out.append(np.concatenate([joint, per, thumb.reshape(-1) / 255.0]))
    return np.stack(out).astype(np.float32)


def split_features(root: str | Path, splits: str | tuple[str, ...]) -> dict[str, np.ndarray]:
    """The baselines' features of the clips in ``splits`` (one name or several):
    ``{"audio": [N, 2F], "video": [N, 544], "labels": [N]}``, labels as indices into the dataset's classes."""
    root = Path(root)
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    _, metas, classes = _load(root)
    mids = [m for m, _ in classes]
    rows = [m for m in metas if m["split"] in splits]
    if not rows:
        raise ValueError(f"{root} has no clips in split {', '.join(map(repr, splits))}; regenerate it with "
                         "`python -m avlib data`.")
    ids = [m["video_id"] for m in rows]
    return {"audio": audio_features(root, ids), "video": video_features(root, ids),
            "labels": np.array([mids.index(m["label"]) for m in rows])}


def fit_classifier(x: np.ndarray, y: np.ndarray, seed: int = 0):
    """The baselines' classifier: standardised features -> logistic regression (scikit-learn), fit on ``x, y``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=3000, random_state=seed))
    return model.fit(x, y)


def baselines(root: str | Path, seed: int = 0, train_splits: tuple[str, ...] = ("train",),
              eval_splits: tuple[str, ...] = ("val", "test")) -> dict[str, dict[str, float]]:
    """Accuracy (%) of the audio, video and late-fusion baselines and of chance: ``{model: {split: accuracy}}``.

    The models are fit on the (true) labels of ``train_splits``; ``("train", "unlabeled")`` shows what all the
    training-domain labels would give. ``fusion`` averages the log-probabilities of the audio and the video model
    (late fusion, no extra fitting).
    """
    root = Path(root)
    kinds, num_classes = ("audio", "video"), len(_load(root)[2])
    fit = split_features(root, train_splits)
    models = {kind: fit_classifier(fit[kind], fit["labels"], seed) for kind in kinds}
    result: dict[str, dict[str, float]] = {"audio": {}, "video": {}, "fusion": {}}
    for s in eval_splits:
        data = split_features(root, s)
        logp = {kind: models[kind].predict_log_proba(data[kind]) for kind in kinds}  # [N, K] each
        logp["fusion"] = (logp["audio"] + logp["video"]) / 2
        for kind, lp in logp.items():
            result[kind][s] = float(100 * np.mean(models["audio"].classes_[lp.argmax(1)] == data["labels"]))
    result["chance"] = {s: 100.0 / num_classes for s in eval_splits}
    return result


def baseline_table(result: dict[str, dict[str, float]], train_splits: tuple[str, ...] = ("train",)) -> str:
    """The baselines as a markdown table."""
    splits = list(next(iter(result.values())))
    names = {"val": "val (training domain)", "test": "test (unseen melodies, rhythms and picture style)"}
    fit = " + ".join(f"`{s}`" for s in train_splits)
    lines = [f"## Baselines: logistic regression fit on the labels of {fit}, accuracy %", "",
             "| features | " + " | ".join(names.get(s, s) for s in splits) + " |",
             "|---|" + "---:|" * len(splits)]
    labels = {"audio": "audio: log-mel mean/std", "video": "video: colour histograms + thumbnail",
              "fusion": "late fusion of the two (mean log-probability)", "chance": "chance"}
    for k, row in result.items():
        lines.append(f"| {labels.get(k, k)} | " + " | ".join(f"{row[s]:.1f}" for s in splits) + " |")
    return "\n".join(lines)


def contact_sheet(root: str | Path, path: str | Path | None = None, per_split: int = 4) -> Path:
    """Save a PNG with the 10 frames (columns) of the first ``per_split`` clips of every split (rows)."""
    from PIL import Image, ImageDraw

    root = Path(root)
    _, metas, _ = _load(root)
    rows = []
    for s in O.SPLITS:
        for m in [m for m in metas if m["split"] == s][:per_split]:
            files = [root / "frames" / f"frame_{i}" / f"{m['video_id']}.jpg" for i in range(O.NUM_FRAMES)]
            frames = [np.asarray(Image.open(f).convert("RGB")) for f in files]
            strip = Image.fromarray(np.concatenate(frames, 1))  # [H, 10 W, 3]
            label = Image.new("RGB", (150, strip.height), (255, 255, 255))
            ImageDraw.Draw(label).text((4, 4), f"{m['video_id']}\n{m['label']}\n(+ {m['distractor']})\n"
                                               f"{m['style']}", fill=(0, 0, 0))
            rows.append(np.concatenate([np.asarray(label), np.asarray(strip)], 1))
    path = Path(path) if path else root / "contact_sheet.png"
    Image.fromarray(np.concatenate(rows, 0)).save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m avlib data-report [--profile P] [--root DIR] [--no-baselines] [--sheet]``."""
    ap = argparse.ArgumentParser(prog="python -m avlib data-report", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=None, help="ci | course | paper (default: $AVLIB_PROFILE or course)")
    ap.add_argument("--root", default=None, help="dataset folder (default: generate/reuse the profile's)")
    ap.add_argument("--no-baselines", action="store_true", help="print the card only")
    ap.add_argument("--sheet", action="store_true", help="also save contact_sheet.png in the dataset folder")
    args = ap.parse_args(argv)
    root = Path(args.root) if args.root else O.generate(args.profile)
    print(dataset_card(root))
    if not args.no_baselines:
        for fit in (("train",), ("train", "unlabeled")):
            print()
            print(baseline_table(baselines(root, train_splits=fit), fit))
    if args.sheet:
        print(f"\ncontact sheet: {contact_sheet(root)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
