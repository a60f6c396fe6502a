"""Predict: which instruments play in a WAV or a video file, with a fine-tuned model.

::

    import avlib.predict
    avlib.predict("clip.mp4", "runs/course/finetune_pretrained_AV/model")   # the module is callable
    avlib.predict.predict(["a.wav", "b.mp4"], model_dir, top_k=3)            # the same, by name

    python -m avlib predict clip.mp4 song.wav --model runs/course/finetune_pretrained_AV/model

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from avlib import env

__all__ = ["Prediction", "default_model_dir", "load_model", "load_input", "predict", "main",
           "AUDIO_EXTENSIONS", "IMAGE_EXTENSIONS"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
NUM_FRAMES = 10


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
    from avlib.models import CAVMAEFT, from_pretrained

    model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"no model in {model_dir} (config.json missing): pass --model <dir written "
                                f"by avlib.train.finetune>, e.g. runs/<profile>/finetune_pretrained_AV/model,"
                                f" or run `make run` first.")
    model = from_pretrained(model_dir, map_location=env.pick_device(device) if device is None else device)
    extra = getattr(model, "extra", {}) or {}
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

    WAV/FLAC/OGG/MP3 give audio only, images one frame, videos audio (if they have a track) + 10 frames.
    Raises ``FileNotFoundError`` / ``ValueError`` naming the file.
    """
    from avlib import audio as A
    from avlib import vision as V

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    ext = path.suffix.lower()
    T, sr = int(pre["target_length"]), int(pre["sample_rate"])
    stats = A.AudioStats.from_dict(pre["audio_stats"]) if pre.get("audio_stats") else None
    transform = V.eval_transform(int(pre["image_size"]))
    wave = frames = None
    if ext in AUDIO_EXTENSIONS:
        wave = A.load_wav(path, sr)  # [S]
    elif ext in IMAGE_EXTENSIONS:
        frames = V.load_frame(path)[None]  # [1, 3, H, W] uint8
    else:
        from avlib.data.video import VIDEO_EXTENSIONS, read_video

        if ext not in VIDEO_EXTENSIONS:
            raise ValueError(f"{path}: unknown file type {ext!r}; give audio "
                             f"({', '.join(AUDIO_EXTENSIONS)}), video ({', '.join(VIDEO_EXTENSIONS)}) or an "
                             f"image.")
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
        if mode in ("audioonly", "missingaudioonly"):
            probs = model(a, None, mode=mode).float().softmax(-1)[0]  # [K]
        else:
            v = frames[None].to(dev)  # [1, V, 3, S, S]
            probs = model.forward_multiframe(a if mode == "multimodal" else None, v, mode=mode,
                                             reduce="softmax")[0].float()  # mean over frames
        k = min(top_k, len(names))
        top = torch.topk(probs.cpu(), k)
        ranked = [(names[i], float(q)) for q, i in zip(top.values, top.indices, strict=True)]
        out.append(Prediction(str(p), mode, ranked, probs.cpu()))
    return out[0] if single else out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m avlib predict FILE... [--model DIR] [--top-k K] [--json]``."""
    p = argparse.ArgumentParser(prog="python -m avlib predict",
                                description="Top-k instruments for WAV / video / image files.")
    p.add_argument("files", nargs="+", help="WAV/FLAC/OGG/MP3, mp4/mkv/webm/..., or an image")
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
    status, results = 0, []
    for f in args.files:
        try:
            r = predict(f, top_k=args.top_k, model=model, pre=pre)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
            continue
        results.append(r)
        if not args.json:
            print(r)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    return status


class _CallableModule(types.ModuleType):
    """Lets ``avlib.predict(...)`` call :func:`predict` while ``avlib.predict`` stays a normal module."""

    def __call__(self, *args, **kwargs):
        return predict(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
