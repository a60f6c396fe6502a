"""Self-checks for notebook 14 (capstone: predicting on your own videos), with targeted hints.

* :func:`predict_clip` - ``fn(path, model, pre, top_k=5) -> [(class name, probability), ...]`` (best first)
  against :func:`avlib.predict.predict` on the same video file, model and preprocessing dict.

Without a model the check builds its own small :class:`~avlib.models.CAVMAEFT` (with a sharpened head, so
that every preprocessing mistake moves the probabilities visibly), a preprocessing dict whose audio statistics
are far from (0, 1), and a 1.5-s mp4 that is longer than the model's audio window. It prints one ✅ / ❌ (with a
hint naming the likely mistake) / ⏭ line and returns True only on success.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from avlib.checks import FAIL, OK, run

__all__ = ["predict_clip", "example_model", "example_video"]

ATOL = 1e-4  # probabilities: a batched forward and forward_multiframe differ by float rounding only


@torch.no_grad()
def example_model(seed: int = 0):
    """``(model, pre)``: a small random ``CAVMAEFT`` (6 classes, 96 x 64 fbank, 64-px frames, D = 32) with
    randomised LayerNorms and a sharpened head, and the preprocessing dict :func:`avlib.predict.load_model`
    would return for it. Built without changing torch's global RNG."""
    from avlib.models import CAVMAEFT, get_config

    cfg = get_config("tiny", audio_length=96, num_mel_bins=64, img_size=64, embed_dim=32, num_heads=2,
                     modality_specific_depth=2, tr_pos=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CAVMAEFT(cfg, num_classes=6).eval()
        g = torch.Generator().manual_seed(seed + 1)
        for m in model.modules():  # distinct LayerNorm sets, so that every mode gives its own answer
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
        model.mlp_head[1].weight.mul_(4.0)  # sharper probabilities: preprocessing mistakes show
    names = ["bell", "cello", "drum", "flute", "horn", "lute"]
    pre = {"sample_rate": 16000, "num_mel_bins": 64, "target_length": 96, "image_size": 64,
           "audio_stats": {"mean": -6.5, "std": 3.5}, "class_names": names, "mode": "multimodal"}
    return model, pre


def example_video(folder: str | Path, seconds: float = 1.5, fps: float = 12.5, size: int = 80,
                  sample_rate: int = 16000, seed: int = 0) -> Path:
    """Write ``<folder>/example.mp4``: a moving bright square on a changing background and a gliding tone
    with a second voice entering half-way (so frames differ and the audio window matters)."""
    from avlib.data.video import write_mp4

    rng = np.random.default_rng(seed)
    n = round(seconds * fps)
    frames = np.empty((n, size, size, 3), np.uint8)
    base = rng.integers(0, 256, (3,))
    for i in range(n):
        img = np.empty((size, size, 3), np.float64)
        img[:] = (base + 180 * i / n) % 256
        x = int((size - 24) * i / max(1, n - 1))
        img[20:44, x:x + 24] = (250, 240 - 20 * (i % 5), 30 + 40 * (i % 3))
        img += rng.normal(0, 12, img.shape)
        frames[i] = img.clip(0, 255).astype(np.uint8)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    audio = 0.3 * np.sin(2 * np.pi * (300 + 400 * t) * t)
    audio += np.where(t > seconds / 2, 0.3 * np.sin(2 * np.pi * 1800 * t), 0.0)
    audio += 0.02 * rng.normal(size=t.shape)
    return write_mp4(Path(folder) / "example.mp4", frames, audio.astype(np.float32), sample_rate, fps)


def _probs(model, pre: dict, path: Path, *, mode: str = "multimodal", stats=None, window: bool = True,
           frames: str = "all", reduce: str = "softmax") -> torch.Tensor:
    """What a (possibly mistaken) hand-written pipeline would compute: ``[K]`` scores."""
    from avlib import audio as A
    from avlib import vision as V
    from avlib.data.video import read_video
    from avlib.predict import NUM_FRAMES

    sr, T = int(pre["sample_rate"]), int(pre["target_length"])
    vd = read_video(path, num_frames=NUM_FRAMES, sample_rate=sr,
                    max_seconds=T * A.FRAME_SHIFT_MS / 1000 if window else None)
    fb = A.fbank(vd.audio, sr, int(pre["num_mel_bins"]))  # [T', F]
    if stats is not None:
        fb = A.normalize(fb, stats)
    audio = A.pad_or_crop(fb, T)  # [T, F]
    video = V.eval_transform(int(pre["image_size"]))(
        torch.from_numpy(vd.frames).permute(0, 3, 1, 2).contiguous())  # [V, 3, S, S]
    if frames != "all":
        video = video[[int(frames)]]
    dev = next(model.parameters()).device
    with torch.no_grad():
        logits = model(audio[None].expand(len(video), -1, -1).to(dev), video.to(dev), mode=mode).float()
    if reduce == "softmax":
        return logits.softmax(-1).mean(0).cpu()  # [K]
    if reduce == "mean_logits":
        return logits.mean(0).softmax(-1).cpu()
    return logits.mean(0).cpu()  # "none": raw logits


def _top(scores: torch.Tensor, names, k: int) -> list[tuple[str, float]]:
    top = torch.topk(scores, min(k, len(names)))
    return [(names[i], float(p)) for p, i in zip(top.values, top.indices, strict=True)]


def _same(got: list[tuple[str, float]], expected: list[tuple[str, float]]) -> bool:
    return len(got) == len(expected) and all(
        g[0] == e[0] and abs(g[1] - e[1]) <= ATOL for g, e in zip(got, expected, strict=True))


def _hint(got, model, pre: dict, path: Path, k: int) -> str:
    """Name the mistake that most likely produced ``got``."""
    from avlib.audio import AUDIOSET_STATS, AudioStats

    names, stats = pre["class_names"], AudioStats.from_dict(pre["audio_stats"])
    probs = [p for _, p in got]
    if any(p < -1e-6 for p in probs) or sum(probs) > 1 + 1e-4:
        return ("these are not probabilities (negative, or summing to more than 1): apply softmax to each "
                "frame's logits, then average over the frames.")
    candidates = [
        (dict(stats=stats, reduce="mean_logits"),
         "you averaged the logits of the frames and then took the softmax; predict takes the softmax of each "
         "frame's logits and averages those probabilities."),
        (dict(stats=None), "normalise the fbank with the training set's statistics, "
                           "avlib.audio.normalize(fbank, AudioStats.from_dict(pre['audio_stats'])), before "
                           "padding it to target_length frames."),
        (dict(stats=AUDIOSET_STATS), "use the statistics stored with the model, pre['audio_stats'] (the "
                                     "orchestra's), not AudioSet's constants."),
        (dict(stats=stats, window=False), "read only the window the model hears: read_video(..., "
                                          "max_seconds=target_length * 10 ms / 1000), so that the frames are "
                                          "spread over the same seconds as the audio."),
    ]
    candidates += [(dict(stats=stats, mode=m), f"an mp4 has sound and pictures: use mode='multimodal', not "
                                               f"{m!r}.")
                   for m in ("missingaudioonly", "missingvideoonly", "audioonly", "videoonly")]
    candidates += [(dict(stats=stats, frames=str(i)), f"you used one frame (index {i}); predict averages the "
                                                      "probabilities of all 10 frames.") for i in range(10)]
    for kwargs, hint in candidates:
        try:
            if _same(got, _top(_probs(model, pre, path, **kwargs), names, k)):
                return hint
        except (ValueError, RuntimeError):
            continue
    return ("follow the steps: read_video(path, 10, sr, max_seconds=window) -> fbank -> normalize(stats) -> "
            "pad_or_crop(T); frames -> eval_transform(image_size); model(audio, frame, 'multimodal') per "
            "frame -> softmax -> mean over frames -> top-k.")


def predict_clip(fn: Callable[..., list], model=None, pre: dict | None = None, path: str | Path | None = None
                 ) -> bool:
    """Check ``fn(path, model, pre, top_k=5)`` against :func:`avlib.predict.predict` (top 5 and top 3).

    ``model`` / ``pre`` (from :func:`avlib.predict.load_model`) and ``path`` (a video with sound) default to a
    small example model and a generated 1.5-s mp4."""
    from avlib.predict import predict

    name = "predict_clip"
    tmp = None
    if model is None or pre is None:
        model, pre = example_model()
    if path is None:
        tmp = tempfile.TemporaryDirectory(prefix="avlib_check_")
        path = example_video(tmp.name)
    path = Path(path)
    model.eval()
    try:
        for k in (5, 3):
            ran, got = run(name, fn, path, model, pre, top_k=k)
            if not ran:
                return False
            if not isinstance(got, list | tuple) or not all(
                    isinstance(x, list | tuple) and len(x) == 2 and isinstance(x[0], str) for x in got):
                print(f"{FAIL} {name} should return a list of (class name, probability) pairs, got "
                      f"{type(got).__name__}: {str(got)[:80]}")
                return False
            got = [(str(c), float(p)) for c, p in got]
            expected = predict(path, top_k=k, model=model, pre=pre).top
            if len(got) != len(expected):
                print(f"{FAIL} {name}(top_k={k}) returned {len(got)} pairs, expected {len(expected)}. Hint: "
                      "return the top_k best classes, best first (torch.topk(probs, top_k)).")
                return False
            if not _same(got, expected):
                shown = ", ".join(f"{c} {p:.3f}" for c, p in got[:3])
                want = ", ".join(f"{c} {p:.3f}" for c, p in expected[:3])
                print(f"{FAIL} {name}(top_k={k}) gave [{shown}], avlib.predict gives [{want}]. "
                      f"Hint: {_hint(got, model, pre, path, k)}")
                return False
        print(f"{OK} {name} matches avlib.predict.predict (top 5 and top 3 classes and their probabilities)")
        return True
    finally:
        if tmp is not None:
            tmp.cleanup()
