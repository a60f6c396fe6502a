"""Self-checks for notebook 13 (evaluation and ablations), with targeted hints.

* :func:`ablation_table` - ``fn(model, clips) -> {mode: {"accuracy": %, "macro_f1": %}}`` for the five test
  inputs of :data:`avlib.evaluate.ABLATION_MODES` (middle frame), against :func:`avlib.evaluate.modality_ablation`.

The check builds its own small fine-tuning model (4 audio and 4 video tokens; every LayerNorm perturbed so that
the five modes give five different answers; a dropout layer in the head, so that a model left in training mode
answers differently from run to run) and a fixed set of 30 clips of 3 frames each.

Each check prints one ✅ / ❌ (with a hint naming the likely mistake) / ⏭ line and returns True only on success.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from avlib.checks import FAIL, OK, run
from avlib.evaluate import ABLATION_MODES, ClipTensors, modality_ablation

__all__ = ["ablation_table", "example"]

_TOL = 1e-3  # percent


def example(seed: int = 0) -> tuple[nn.Module, ClipTensors]:
    """The check's model and clips: a small ``CAVMAEFT`` (5 classes, 32 x 32 spectrograms, 32-px frames) with
    perturbed LayerNorms and ``Dropout(0.5)`` in its head, in training mode, and 30 clips of 3 frames each.
    Built without touching the global random state."""
    from avlib.models import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model("tiny", num_classes=5, audio_length=32, num_mel_bins=32, img_size=32, embed_dim=32,
                             num_heads=2, modality_specific_depth=1)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:  # LayerNorm weights and biases, biases: make the norm sets differ
                p.add_(0.5 * torch.randn(p.shape, generator=g))
    head = model.mlp_head
    model.mlp_head = nn.Sequential(head[0], nn.Dropout(0.5), head[1])  # train-mode answers vary
    model.train()
    n, V = 30, 3
    audio = torch.randn(n, 32, 32, generator=g)
    video = torch.randn(n, V, 3, 32, 32, generator=g)
    labels = torch.nn.functional.one_hot(torch.randint(5, (n,), generator=g), 5).float()
    names = ["oboe", "lute", "gong", "tuba", "harp"]
    return model, ClipTensors(audio, video, labels, [f"clip{i}" for i in range(n)], names)


class _Spy:
    """Records, at every pass through the head, whether the model was in training mode and whether autograd
    was recording."""

    def __init__(self, model: nn.Module) -> None:
        self.training = self.grad = False
        self.calls = 0
        self.handle = model.mlp_head.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, args: Any) -> None:
        self.calls += 1
        self.training |= module.training
        self.grad |= torch.is_grad_enabled()

    def remove(self) -> None:
        self.handle.remove()


def _number(x: Any) -> float | None:
    if isinstance(x, torch.Tensor) and x.numel() == 1:
        return float(x)
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    return None


def _rows(got: Any, name: str) -> dict[str, tuple[float, float]] | None:
    """``got`` as mode -> (accuracy, macro_f1), or print a ❌ verdict about its shape and return None."""
    if not isinstance(got, dict):
        print(f"{FAIL} {name} should return a dict mode -> {{'accuracy': ..., 'macro_f1': ...}}, got "
              f"{type(got).__name__}.")
        return None
    missing = [m for m in ABLATION_MODES if m not in got]
    extra = [m for m in got if m not in ABLATION_MODES]
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(map(repr, extra))}"] if extra else [])
        print(f"{FAIL} {name}: {'; '.join(parts)}. Hint: one row per mode of avlib.evaluate.ABLATION_MODES, "
              f"keyed by the mode names the model takes: {', '.join(ABLATION_MODES)}.")
        return None
    out = {}
    for m in ABLATION_MODES:
        row = got[m]
        vals = [_number(row.get(k)) if isinstance(row, dict) else None for k in ("accuracy", "macro_f1")]
        if None in vals:
            print(f"{FAIL} {name}: the row of {m!r} should be a dict with two numbers, 'accuracy' and "
                  f"'macro_f1', got {row!r:.80}.")
            return None
        out[m] = (vals[0], vals[1])
    return out


def _close(a: tuple[float, float], b: tuple[float, float], scale: float = 1.0) -> bool:
    return all(abs(x * scale - y) <= _TOL for x, y in zip(a, b, strict=True))


def _table(model: nn.Module, clips: ClipTensors, frame_agg: bool = False) -> dict[str, tuple[float, float]]:
    res = modality_ablation(model, clips, frame_agg=frame_agg)
    return {m: (r["accuracy"], r["macro_f1"]) for m, r in res.items()}


def _hint(mode: str, row: tuple[float, float], got: dict[str, tuple[float, float]],
          expected: dict[str, tuple[float, float]], model: nn.Module, clips: ClipTensors) -> str:
    """Name the mistake that most likely produced ``row`` for ``mode``."""
    if all(_close(got[m], expected[m], 100) for m in ABLATION_MODES):
        return ("these are fractions; report percent (x 100), as avlib.evaluate.evaluate and the results "
                "table do.")
    if _close(row, (expected[mode][0], expected[mode][0])) and not _close(row, expected[mode]):
        return ("the accuracy is right but the F1 equals it: that is micro-F1. Macro-F1 is the unweighted mean "
                "over classes of each class's F1 = 2 TP / (2 TP + FP + FN) (avlib.metrics.macro_f1).")
    for other in ABLATION_MODES:
        if other != mode and _close(row, expected[other]):
            return (f"the row of {mode!r} holds what mode={other!r} gives. Call the model with the row's own "
                    f"mode, model(audio, video, mode={mode!r}); "
                    + ("the missing*only modes are for an audio-visual model that lost one input (they average "
                       "the joint path and the single-modality path)." if mode.startswith("missing") else
                       "each mode picks its own path through the shared block and its own final norm."))
    first = ClipTensors(clips.audio, clips.video[:, 0], clips.labels, clips.video_ids, clips.class_names)
    if mode in ("multimodal", "videoonly", "missingvideoonly"):
        if _close(row, _table(model, clips, frame_agg=True)[mode]):
            return ("you averaged over all the frames; this table uses the middle frame only, "
                    "clips.middle_frame() (frame aggregation comes later in the notebook).")
        if _close(row, _table(model, first)[mode]):
            return "use the middle frame, clips.middle_frame() (index V // 2), not frame 0."
    return ("for each mode: logits = model(audio or None, middle frame or None, mode=mode) on every clip, then "
            "100 * avlib.metrics.accuracy(logits, clips.targets) and 100 * avlib.metrics.macro_f1(...).")


def ablation_table(fn: Callable[..., dict]) -> bool:
    """Check ``fn(model, clips) -> {mode: {"accuracy": %, "macro_f1": %}}`` against
    :func:`avlib.evaluate.modality_ablation` (middle frame) on :func:`example`."""
    name = "ablation_table"
    model, clips = example()
    spy = _Spy(model)
    try:
        ran, got = run(name, fn, model, clips)
    finally:
        spy.remove()
    if not ran:
        return False
    if spy.training:
        print(f"{FAIL} {name}: the model was in training mode when it classified. Hint: call model.eval() "
              f"before evaluating - in training mode dropout (here in the head) is active, so the predictions "
              f"change from run to run.")
        return False
    rows = _rows(got, name)
    if rows is None:
        return False
    if spy.grad:
        print(f"{FAIL} {name}: autograd was recording during the evaluation. Hint: wrap it in torch.no_grad() "
              f"(or torch.inference_mode()): otherwise PyTorch keeps every activation for a backward pass that "
              f"never comes - on a whole test set that is a lot of memory.")
        return False
    expected = _table(model, clips)
    for mode in ABLATION_MODES:
        if not _close(rows[mode], expected[mode]):
            acc, f1 = rows[mode]
            print(f"{FAIL} {name}[{mode!r}] = accuracy {acc:.2f}, macro-F1 {f1:.2f}; expected "
                  f"{expected[mode][0]:.2f}, {expected[mode][1]:.2f}. "
                  f"Hint: {_hint(mode, rows[mode], rows, expected, model.eval(), clips)}")
            return False
    print(f"{OK} {name} matches avlib.evaluate.modality_ablation (five test inputs, accuracy and macro-F1 in %)")
    return True
