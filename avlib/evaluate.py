"""Evaluation: a split held in memory, class scores, metrics, the modality ablation, frame aggregation, and
embeddings for retrieval.

::

    clips = load_split(root / "datafiles/test.json", frames="all")      # 10 frames per clip, decoded once
    evaluate(model, clips, mode="multimodal", frame_agg=True)          # accuracy, macro-F1, confusion, mAP
    modality_ablation(model, clips)                                     # one row per FT mode
    a, v = embeddings(pretrained, clips); metrics.retrieval_metrics(a, v)

Evaluation splits are small, so :func:`load_split` decodes every clip once (fbank + frames, no augmentation)
and every later evaluation - each epoch's validation, every model and mode - reuses the tensors.

Frame aggregation (the reference's final test): the clip is classified from each of its 10 frames and the
per-frame **probabilities** are averaged (softmax for single-label accuracy, sigmoid for multi-label mAP).
``CAVMAEFT.forward_multiframe`` runs the audio branch once per clip instead of 10 times.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from avlib import metrics as M
from avlib import vision as V
from avlib.checkpoint import unwrap
from avlib.models import mode_inputs

__all__ = ["ClipTensors", "load_split", "autocast", "predict_scores", "evaluate", "ABLATION_MODES",
           "modality_ablation", "embeddings", "retrieval", "format_table", "table_differences"]

# mode -> what the row means (the reference's names; "missing*only" = an AV model given one modality)
ABLATION_MODES: dict[str, str] = {
    "multimodal": "audio + video",
    "audioonly": "audio only (audio-stream norms)",
    "videoonly": "video only (video-stream norms)",
    "missingaudioonly": "audio only, video missing (AV + audio norms averaged)",
    "missingvideoonly": "video only, audio missing (AV + video norms averaged)",
}


@dataclass
class ClipTensors:
    """A whole split as tensors: ``audio [N, T, F]``, ``video [N, 3, H, W]`` or ``[N, V, 3, H, W]``,
    ``labels [N, K]`` (multi-hot), plus ids and class names. Either modality may be None."""

    audio: torch.Tensor | None
    video: torch.Tensor | None
    labels: torch.Tensor
    video_ids: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def multilabel(self) -> bool:
        """True if some clip has more than one label (then mAP is the main metric)."""
        return bool((self.labels.sum(1) > 1).any())

    @property
    def targets(self) -> torch.Tensor:
        """Class index per clip ``[N]`` (argmax of the label vector)."""
        return self.labels.argmax(1)

    def middle_frame(self) -> torch.Tensor | None:
        """``[N, 3, H, W]``: the middle frame (index V // 2 = 5, as the reference) of multi-frame clips."""
        if self.video is None or self.video.ndim == 4:
            return self.video
        return self.video[:, self.video.shape[1] // 2]  # [N, V, 3, H, W] -> [N, 3, H, W]

    def subset(self, index: Sequence[int] | torch.Tensor) -> ClipTensors:
        idx = torch.as_tensor(index, dtype=torch.long)
        pick = lambda t: None if t is None else t[idx]
        ids = [self.video_ids[i] for i in idx.tolist()] if self.video_ids else []
        return ClipTensors(pick(self.audio), pick(self.video), self.labels[idx], ids, self.class_names)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor | None, torch.Tensor | None]]:
        for s in range(0, len(self), batch_size):
            sl = slice(s, s + batch_size)
            a = None if self.audio is None else self.audio[sl]
            yield a, (None if self.video is None else self.video[sl])


# load_split(..., cache=True) memo, keyed by file, mtime and settings; least recently used first, frames as uint8
_SPLITS: OrderedDict[tuple, ClipTensors] = OrderedDict()
CACHE_BYTES = 2 * 2**30  # the memo drops its least recently used splits beyond this (the newest always stays)


def load_split(datafile: str | Path, frames: str = "middle", modalities: Sequence[str] = ("audio", "video"),
               num_workers: int = 0, progress: bool = True, cache: bool = False,
               **dataset_cfg: Any) -> ClipTensors:
    """Decode every clip of ``datafile`` once, without augmentation, into a :class:`ClipTensors`.

    ``frames`` is ``"middle"`` (one frame per clip) or ``"all"`` (all 10: frame aggregation and the middle
    frame both come from it). ``dataset_cfg`` goes to ``AVDatasetConfig`` (sizes; default: the profile's).
    ``cache=True`` keeps the result in memory for later calls with the same arguments (and an unchanged
    datafile); a cached multi-frame split also serves ``frames="middle"``. The memo holds frames as uint8 (they
    are pictures; a call gets the same float32 values back) and at most :data:`CACHE_BYTES`.
    """
    from avlib.data.dataset import AVDataset, AVDatasetConfig

    cfg = AVDatasetConfig(train=False, frames=frames, modalities=tuple(modalities), **dataset_cfg)
    path = Path(datafile).resolve()
    if cache:
        key = lambda fr, mods: (str(path), path.stat().st_mtime_ns, fr, tuple(mods),
                                json.dumps(cfg.to_dict() | {"frames": fr, "modalities": list(mods)},
                                           sort_keys=True, default=str))
        for fr in ([frames, "all"] if frames == "middle" else [frames]):
            for mods in {tuple(modalities), ("audio", "video")}:
                hit = _SPLITS.get(key(fr, mods))
                if hit is not None:
                    _SPLITS.move_to_end(key(fr, mods))
                    return _unpack(_narrow(hit, frames, modalities))
    clips = _decode(AVDataset(datafile, cfg=cfg), num_workers, progress, Path(datafile).stem)
    if cache:
        _remember(key(frames, tuple(modalities)), _pack(clips))
    return clips


def _nbytes(clips: ClipTensors) -> int:
    return sum(t.numel() * t.element_size() for t in (clips.audio, clips.video, clips.labels) if t is not None)


def _remember(key: tuple, clips: ClipTensors) -> None:
    _SPLITS[key] = clips
    while len(_SPLITS) > 1 and sum(_nbytes(c) for c in _SPLITS.values()) > CACHE_BYTES:
        _SPLITS.popitem(last=False)  # the least recently used


def _pack(clips: ClipTensors, chunk: int = 256) -> ClipTensors:
    """The frames as uint8 (a quarter of the memory) when that gives back exactly the same float32 values (eval
    frames are uint8 pictures, normalised); otherwise unchanged."""
    if clips.video is None or not clips.video.is_floating_point():
        return clips
    parts = []
    for x in clips.video.split(chunk):  # [n, (V,) 3, H, W] chunks: bounded temporaries
        u = (V.denormalize(x) * 255).round_().to(torch.uint8)  # [n, (V,) 3, H, W]
        if not torch.equal(V.to_normalized_float(u), x):
            return clips
        parts.append(u)
    return dataclasses.replace(clips, video=torch.cat(parts))


def _unpack(clips: ClipTensors) -> ClipTensors:
    if clips.video is None or clips.video.is_floating_point():
        return clips
    return dataclasses.replace(clips, video=V.to_normalized_float(clips.video))


def _narrow(clips: ClipTensors, frames: str, modalities: Sequence[str]) -> ClipTensors:
    video = clips.video if frames == "all" else clips.middle_frame()
    return ClipTensors(clips.audio if "audio" in modalities else None,
                       video if "video" in modalities else None, clips.labels, clips.video_ids,
                       clips.class_names)


def _decode(ds, num_workers: int, progress: bool, name: str) -> ClipTensors:
    loader = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=num_workers,
                                         collate_fn=_collate_named)
    parts: dict[str, list] = {"audio": [], "video": [], "label": [], "video_id": []}
    for batch in tqdm(loader, desc=f"decode {name}", disable=not progress, leave=False):
        for k in parts:
            if k in batch:
                parts[k].append(batch[k])
    cat = lambda k: torch.cat(parts[k]) if parts[k] else None
    return ClipTensors(audio=cat("audio"), video=cat("video"), labels=cat("label"),
                       video_ids=[v for chunk in parts["video_id"] for v in chunk],
                       class_names=list(ds.labels.names))


def _collate_named(items: list[dict]) -> dict:
    out = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        out[k] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else vals
    return out


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CPU / CUDA when ``enabled`` (a no-op context otherwise)."""
    if not enabled:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict_scores(model: torch.nn.Module, clips: ClipTensors, mode: str = "multimodal",
                   frame_agg: bool = False, activation: str = "softmax", batch_size: int = 32,
                   amp: bool = False, progress: bool = False) -> torch.Tensor:
    """Class probabilities ``[N, K]`` of a ``CAVMAEFT`` on every clip (``activation``: softmax | sigmoid).

    ``frame_agg=True`` needs multi-frame clips and averages the per-frame probabilities; otherwise the middle
    frame is used. Only the inputs ``mode`` needs are moved to the device.
    """
    model = unwrap(model)
    was_training = model.training
    model.eval()
    dev = _model_device(model)
    needs_a, needs_v = ("audio" in mode_inputs(mode)), ("video" in mode_inputs(mode))
    missing = [m for m, need, have in (("audio", needs_a, clips.audio), ("video", needs_v, clips.video))
               if need and have is None]
    if missing:
        raise ValueError(f"mode {mode!r} needs {' and '.join(missing)}, but the clips hold none; load the "
                         f"split with load_split(..., modalities=('audio', 'video')).")
    video = clips.video if frame_agg else clips.middle_frame()
    if frame_agg and (video is None or video.ndim != 5):
        raise ValueError("frame_agg=True needs all frames: load the split with load_split(..., frames='all')")
    view = ClipTensors(clips.audio if needs_a else None, video if needs_v else None, clips.labels)
    out = []
    with autocast(dev, amp):
        for a, v in tqdm(view.batches(batch_size), total=-(-len(view) // batch_size), disable=not progress,
                         leave=False, desc=f"eval {mode}"):
            a = a.to(dev) if a is not None else None
            v = v.to(dev) if v is not None else None
            if frame_agg:
                p = model.forward_multiframe(a, v, mode=mode, reduce=activation)  # [B, K]
            else:
                logits = model(a, v, mode=mode)
                p = logits.float().softmax(-1) if activation == "softmax" else logits.float().sigmoid()
            out.append(p.float().cpu())
    model.train(was_training)
    return torch.cat(out)


def evaluate(model: torch.nn.Module, clips: ClipTensors, mode: str = "multimodal", frame_agg: bool = False,
             batch_size: int = 32, amp: bool = False, progress: bool = False) -> dict[str, Any]:
    """Metrics of a classifier on ``clips``: ``accuracy`` and ``macro_f1`` (in %), ``per_class_accuracy``,
    ``confusion``, and ``mAP`` / ``mAUC`` (in %, sigmoid scores; the reference's multi-label metrics)."""
    probs = predict_scores(model, clips, mode, frame_agg, "softmax", batch_size, amp, progress)
    res = M.classification_metrics(probs, clips.labels, clips.class_names or None)
    res["accuracy"] *= 100
    res["macro_f1"] *= 100
    res["per_class_accuracy"] = {k: 100 * v for k, v in res["per_class_accuracy"].items()}
    if clips.multilabel:  # sigmoid scores for the multi-label metrics, as the reference
        probs = predict_scores(model, clips, mode, frame_agg, "sigmoid", batch_size, amp)
    ml = M.multilabel_metrics(probs, clips.labels)
    res.update(mAP=100 * ml["mAP"], mAUC=100 * ml["mAUC"], d_prime=ml["d_prime"], n=len(clips), mode=mode,
               frame_agg=frame_agg)
    return res


def modality_ablation(model: torch.nn.Module, clips: ClipTensors,
                      modes: Sequence[str] = tuple(ABLATION_MODES), frame_agg: bool = False,
                      amp: bool = False) -> dict[str, dict[str, Any]]:
    """:func:`evaluate` the same model in each of ``modes`` (default: all five) -> mode -> metrics."""
    return {m: evaluate(model, clips, m, frame_agg=frame_agg and "video" in mode_inputs(m), amp=amp) for m in modes}


@torch.no_grad()
def embeddings(model: torch.nn.Module, clips: ClipTensors, batch_size: int = 32,
               amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip embeddings for retrieval: mean over all (un-masked) tokens of the audio stream and of the video
    stream (``forward_feat``; the middle frame), as the reference -> ``a [N, D]``, ``v [N, D]``."""
    model = unwrap(model)
    was_training = model.training
    model.eval()
    dev = _model_device(model)
    view = ClipTensors(clips.audio, clips.middle_frame(), clips.labels)
    out_a, out_v = [], []
    with autocast(dev, amp):
        for a, v in view.batches(batch_size):
            fa, fv = model.forward_feat(a.to(dev), v.to(dev))  # [B, La, D], [B, Lv, D]
            out_a.append(fa.float().mean(1).cpu())  # [B, D]
            out_v.append(fv.float().mean(1).cpu())
    model.train(was_training)
    return torch.cat(out_a), torch.cat(out_v)


def retrieval(model: torch.nn.Module, clips: ClipTensors, amp: bool = False,
              center: bool = False) -> dict[str, Any]:
    """Audio->video and video->audio retrieval on ``clips`` (R@1/5/10 in %, median and mean rank) plus the
    similarity matrix ``sim [N, N]`` (rows = audio) and the embeddings.

    ``center`` subtracts each modality's mean embedding over ``clips`` first (no labels used), as a model
    pretrained with ``PretrainConfig(contrast_center=True)`` was trained."""
    a, v = embeddings(model, clips, amp=amp)
    if center:
        a, v = a - a.mean(0, keepdim=True), v - v.mean(0, keepdim=True)  # [N, D] each
    res: dict[str, Any] = M.retrieval_metrics(a, v)
    for d in ("a2v", "v2a"):
        res[d] = {k: (100 * x if k.startswith("R@") else x) for k, x in res[d].items()}
    res.update(sim=M.similarity(a, v), emb_a=a, emb_v=v, n=len(clips))
    return res


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, floatfmt: str = ".1f"
                 ) -> str:
    """A GitHub-markdown table of ``rows`` (dicts); floats formatted with ``floatfmt``."""
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    cell = lambda x: format(x, floatfmt) if isinstance(x, float) else ("" if x is None else str(x))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def table_differences(rows: Sequence[dict[str, Any]], reference: Sequence[dict[str, Any]],
                      keys: Sequence[str], columns: Sequence[str] | None = None, tol: float = 0.05,
                      floatfmt: str = ".1f") -> list[str]:
    """Compare two result tables (lists of row dicts, e.g. a notebook's and ``results.json``'s), matching
    rows on the values of ``keys``. Numbers within ``tol`` count as equal (default: half of the 0.1 that the
    tables print). Returns one line per difference; an empty list means the tables agree.

    ``columns`` (default: every other column of ``rows``) are compared; a column that one row has and the
    other lacks is a difference too.
    """
    name = lambda r: ", ".join(f"{k}={r.get(k)}" for k in keys)  # noqa: E731
    ref = {tuple(r.get(k) for k in keys): r for r in reference}
    columns = list(columns or dict.fromkeys(c for r in rows for c in r if c not in keys))
    show = lambda x: format(x, floatfmt) if isinstance(x, float) else repr(x)  # noqa: E731
    out, seen = [], set()
    for r in rows:
        key = tuple(r.get(k) for k in keys)
        seen.add(key)
        other = ref.get(key)
        if other is None:
            out.append(f"{name(r)}: not in the reference")
            continue
        for c in columns:
            mine, theirs = r.get(c), other.get(c)
            if mine is None and theirs is None:
                continue
            numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (mine, theirs))
            if numbers and abs(float(mine) - float(theirs)) <= tol:
                continue
            if not numbers and mine == theirs:
                continue
            out.append(f"{name(r)}: {c} {'absent' if mine is None else show(mine)} here, "
                       f"{'absent' if theirs is None else show(theirs)} in the reference")
    out += [f"{name(r)}: only in the reference" for k, r in ref.items() if k not in seen]
    return out
