"""Predict: which instruments play in a WAV or a video file, with a fine-tuned model.

::

    import avlib.predict
    avlib.predict("clip.mp4", "runs/course/finetune_pretrained_AV/model")   # the module is callable
    avlib.predict.predict(["a.wav", "b.mp4"], model_dir, top_k=3)            # the same, by name

    python -m avlib predict clip.mp4 song.wav --model runs/course/finetune_pretrained_AV/model
    python -m avlib predict my_clips/ 'more/*.m4a'          # folders and glob patterns; keeps going on errors

The preprocessing stored with the model (``config.json`` -> ``extra.preprocessing``: sample rate, mel bins,
fbank length, image size, fbank mean/std, class names) turns a file into model input exactly as in training:
16-kHz mono -> kaldi fbank -> normalise -> pad/crop to T frames; 10 frames evenly spaced over the same window
-> resize + centre crop + ImageNet normalisation.

The input decides the mode: audio + video -> ``multimodal`` with the 10 frames' probabilities averaged
(frame aggregation); a WAV (or a video without sound) given to an AV model -> ``missingaudioonly`` /
``missingvideoonly``; a single-modality model uses its own mode and refuses a file that lacks its modality.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from avlib import env
from avlib.models import mode_inputs

__all__ = ["Prediction", "default_model_dir", "load_model", "load_input", "predict", "expand_inputs", "main"]

NUM_FRAMES = 10
SMALL_IMAGE = 4  # an image upscaled more than this factor to the model's size gets a warning


@dataclass
class Prediction:
    """Top-k classes for one file."""

    path: str
    mode: str  # the forward mode used
    top: list[tuple[str, float]]  # (class name, probability), best first
    probs: torch.Tensor = field(repr=False, default_factory=lambda: torch.zeros(0))  # [K]

    def __str__(self) -> str:
        lines = [f"{self.path}  ({self.mode})"]
        lines += [f"  {p * 100:5.1f} %  {name}" for name, p in self.top]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"path": self.path, "mode": self.mode, "top": [{"class": n, "prob": p} for n, p in self.top]}


def default_model_dir() -> Path:
    """``runs/<profile>/finetune_pretrained_AV/model``, where ``make run`` puts the AV model."""
    return env.ROOT / "runs" / env.profile_name() / "finetune_pretrained_AV" / "model"


def load_model(model_dir: str | Path | None = None, device: str | torch.device | None = None):
    """A fine-tuned ``CAVMAEFT`` and its preprocessing dict (``extra.preprocessing`` + ``mode``)."""
    from avlib.models import CAVMAEFT, from_pretrained, load_config

    model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"no model in {model_dir} (config.json missing): pass --model <dir written "
                                f"by avlib.train.finetune>, e.g. runs/<profile>/finetune_pretrained_AV/model,"
                                f" or run `make run` first.")
    model = from_pretrained(model_dir, map_location=env.pick_device(device) if device is None else device)
    extra = load_config(model_dir).get("extra") or {}
    if not isinstance(model, CAVMAEFT):
        raise ValueError(f"{model_dir} holds a pretraining model ({type(model).__name__}); predict needs a "
                         f"fine-tuned classifier (the 'model' folder of a finetune run).")
    pre = dict(extra.get("preprocessing") or {})
    needed = ("sample_rate", "num_mel_bins", "target_length", "image_size") + \
        (("audio_stats",) if extra.get("mode") != "videoonly" else ())
    missing = [k for k in needed if pre.get(k) is None]
    if missing:
        raise ValueError(f"{model_dir}/config.json lacks extra.preprocessing fields {missing}; save the "
                         f"model with avlib.train.finetune (it stores them).")
    pre["mode"] = extra.get("mode", "multimodal")
    pre["class_names"] = list(extra.get("class_names") or pre.get("class_names") or
                              [str(k) for k in range(model.num_classes)])
    return model, pre


def load_input(path: str | Path, pre: dict) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A file -> model inputs ``audio [T, F]`` (or None) and ``frames [V, 3, S, S]`` (or None).

    The file is recognised by its content (:func:`avlib.media.probe`), not its extension: a sound (WAV, FLAC,
    MP3, OGG/Opus, M4A, ...; also an MP3 with cover art) gives audio only, an image one frame, a video its
    audio (if it has a track) + 10 frames. Audio is mixed down and tracks chosen as in
    :func:`avlib.audio.load_wav`; video frames are upright (rotation flags honoured). A very small image is
    upscaled to the model's size with a warning.
    Raises ``FileNotFoundError`` / ``ValueError`` naming the file.
    """
    from avlib import audio as A
    from avlib import vision as V
    from avlib.media import probe

    path = Path(path)
    kind = probe(path)
    T, sr, size = int(pre["target_length"]), int(pre["sample_rate"]), int(pre["image_size"])
    stats = A.AudioStats.from_dict(pre["audio_stats"]) if pre.get("audio_stats") else None
    transform = V.eval_transform(size)
    wave = frames = None
    if kind == "audio":
        wave = A.load_wav(path, sr)  # [S]
    elif kind == "image":
        frames = V.load_frame(path, size)[None]  # [1, 3, H, W] uint8 (large JPEGs decoded at reduced size)
        if SMALL_IMAGE * min(frames.shape[-2:]) < size:
            warnings.warn(f"{path}: image of {frames.shape[-1]}x{frames.shape[-2]} pixels is upscaled to "
                          f"{size}x{size}; the prediction may be poor.", stacklevel=2)
    else:
        from avlib.data.video import read_video

        window = T * A.FRAME_SHIFT_MS / 1000  # seconds of audio the model sees
        vd = read_video(path, num_frames=NUM_FRAMES, sample_rate=sr, max_seconds=window)
        frames = torch.from_numpy(vd.frames).permute(0, 3, 1, 2).contiguous()  # [V, H, W, 3] -> [V, 3, H, W]
        wave = vd.audio
        if wave is not None and wave.numel() < sr // 10:
            wave = None  # an (almost) empty track: treat as no audio
    audio = None
    if wave is not None and stats is not None:
        fb = A.fbank(wave, sr, int(pre["num_mel_bins"]))  # [T', F] (as AVDataset: fbank, normalise, pad)
        audio = A.pad_or_crop(A.normalize(fb, stats), T)  # [T, F]
    if frames is not None:
        frames = transform(frames)  # [V, 3, S, S] float, normalised
    return audio, frames


def _mode_for(model_mode: str, has_audio: bool, has_video: bool, path: str) -> str:
    if model_mode == "audioonly":
        if not has_audio:
            raise ValueError(f"{path}: this model listens only (audioonly) but the file has no audio track.")
        return "audioonly"
    if model_mode == "videoonly":
        if not has_video:
            raise ValueError(f"{path}: this model only looks (videoonly) but the file has no pictures.")
        return "videoonly"
    if has_audio and has_video:
        return "multimodal"
    return "missingaudioonly" if has_audio else "missingvideoonly"


@torch.no_grad()
def predict(path_or_paths: str | Path | Sequence[str | Path], model_dir: str | Path | None = None,
            top_k: int = 5, device: str | None = None, model=None, pre: dict | None = None
            ) -> Prediction | list[Prediction]:
    """Top-``top_k`` instruments for one file (returns a :class:`Prediction`) or several (a list).

    ``model_dir`` is a fine-tuned model folder (default: ``runs/<profile>/finetune_pretrained_AV/model``);
    pass ``model`` and ``pre`` (from :func:`load_model`) to skip loading it again.
    """
    single = isinstance(path_or_paths, str | Path)
    paths = [path_or_paths] if single else list(path_or_paths)
    if model is None or pre is None:
        model, pre = load_model(model_dir, device)
    model.eval()
    dev = next(model.parameters()).device
    names = pre["class_names"]
    out = []
    for p in paths:
        audio, frames = load_input(p, pre)
        mode = _mode_for(pre["mode"], audio is not None, frames is not None, str(p))
        a = audio[None].to(dev) if audio is not None else None  # [1, T, F]
        if "video" not in mode_inputs(mode):
            probs = model(a, None, mode=mode).float().softmax(-1)[0]  # [K]
        else:
            v = frames[None].to(dev)  # [1, V, 3, S, S]
            probs = model.forward_multiframe(a if mode == "multimodal" else None, v, mode=mode,
                                             reduce="softmax")[0].float()  # mean over frames
        if not torch.isfinite(probs).all():
            raise ValueError(f"{p}: the model gave non-finite probabilities (NaN/Inf) for this file; check "
                             "its samples and the model's weights.")
        k = min(top_k, len(names))
        top = torch.topk(probs.cpu(), k)
        ranked = [(names[i], float(q)) for q, i in zip(top.values, top.indices, strict=True)]
        out.append(Prediction(str(p), mode, ranked, probs.cpu()))
    return out[0] if single else out


def expand_inputs(args: Sequence[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Command-line inputs -> (files, problems). A folder gives its files (sorted, hidden ones left out, not
    recursive); a pattern with ``*``, ``?`` or ``[`` that is not itself a file is expanded as a glob
    (``**`` recurses). A folder or pattern that yields nothing is a problem ``(arg, reason)``."""
    import glob

    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    for a in args:
        p = Path(a)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith("."))
            files += found
            if not found:
                problems.append((a, "the folder holds no files"))
        elif not p.exists() and any(c in a for c in "*?["):
            found = sorted(Path(q) for q in glob.glob(a, recursive=True) if Path(q).is_file())
            files += found
            if not found:
                problems.append((a, "no file matches this pattern"))
        else:
            files.append(p)
    return files, problems


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m avlib predict FILE|FOLDER|GLOB... [--model DIR] [--top-k K] [--json]``.

    Every file is tried, whatever happens to the others: each failure prints one line ``error: <file>:
    <reason>`` on stderr (with ``--json`` it is also listed as ``{"path", "error"}``), and the exit status is
    1 if any file failed (2 if the model cannot be loaded). The JSON is strict (never a bare NaN).
    """
    p = argparse.ArgumentParser(prog="python -m avlib predict",
                                description="Top-k instruments for sound / video / image files (recognised "
                                            "by content), folders of them, or glob patterns.")
    p.add_argument("files", nargs="+", help="files (WAV/FLAC/MP3/OGG/Opus/M4A, mp4/mov/mkv/webm/..., images), "
                                            "folders (their files) or quoted glob patterns such as 'clips/*.mp4'")
    p.add_argument("--model", default=None, help=f"fine-tuned model folder (default: {default_model_dir()})")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = p.parse_args(list(argv) if argv is not None else None)
    try:
        model, pre = load_model(args.model, args.device)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    files, problems = expand_inputs(args.files)
    results: list[dict] = [{"path": a, "error": reason} for a, reason in problems]
    for a, reason in problems:
        print(f"error: {a}: {reason}", file=sys.stderr)
    for f in files:
        try:
            r = predict(f, top_k=args.top_k, model=model, pre=pre)
        except Exception as e:  # noqa: BLE001 - one bad file must not lose the results of the good ones
            reason = str(e) if isinstance(e, ValueError | FileNotFoundError) else f"{type(e).__name__}: {e}"
            problems.append((str(f), reason))
            results.append({"path": str(f), "error": reason})
            print(f"error: {f}: {' '.join(reason.split())}", file=sys.stderr)
            continue
        results.append(r.to_dict())
        if not args.json:
            print(r)
    if args.json:
        print(json.dumps(results, indent=2, allow_nan=False))
    return 1 if problems else 0


class _CallableModule(types.ModuleType):
    """Lets ``avlib.predict(...)`` call :func:`predict` while ``avlib.predict`` stays a normal module."""

    def __call__(self, *args, **kwargs):
        return predict(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
