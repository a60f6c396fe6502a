"""Self-checks of notebook 13 (``avlib.checks.evaluation``): right answers pass, typical mistakes get their hint."""

import pytest
import torch

from avlib import checks, metrics
from avlib.evaluate import ABLATION_MODES, evaluate
from avlib.models import MODE_INPUTS


def _table(model, clips, modes=None, frame=None, scale=100.0, f1=metrics.macro_f1, grad=False, train=False):
    """A configurable version of the exercise: the right answer with its defaults."""
    if not train:
        model.eval()
    video = clips.middle_frame() if frame is None else clips.video[:, frame]
    out = {}
    with torch.set_grad_enabled(grad):
        for mode in ABLATION_MODES:
            run_as = (modes or {}).get(mode, mode)
            a = clips.audio if "audio" in MODE_INPUTS[run_as] else None
            v = video if "video" in MODE_INPUTS[run_as] else None
            logits = model(a, v, mode=run_as)
            out[mode] = {"accuracy": scale * metrics.accuracy(logits, clips.targets),
                         "macro_f1": scale * f1(logits, clips.targets)}
    return out


def good(model, clips):
    return _table(model, clips)


def with_evaluate(model, clips):
    return {m: {k: evaluate(model, clips, m)[k] for k in ("accuracy", "macro_f1")} for m in ABLATION_MODES}


def with_inference_mode_and_tensors(model, clips):
    model.eval()
    out = {}
    with torch.inference_mode():
        for mode in ABLATION_MODES:  # both inputs every time: each mode ignores what it does not use
            pred = model(clips.audio, clips.middle_frame(), mode=mode).argmax(-1)
            acc = (pred == clips.targets).double().mean() * 100
            out[mode] = {"accuracy": acc, "macro_f1": torch.tensor(100 * metrics.macro_f1(pred, clips.targets, 5))}
    return out


def fractions(model, clips):
    return _table(model, clips, scale=1.0)


def single_modality_modes(model, clips):
    return _table(model, clips, modes={"missingaudioonly": "audioonly", "missingvideoonly": "videoonly"})


def micro_f1(model, clips):
    return _table(model, clips, f1=metrics.accuracy)


def all_frames(model, clips):
    model.eval()
    with torch.no_grad():
        out = {}
        for mode in ABLATION_MODES:
            a = clips.audio if "audio" in MODE_INPUTS[mode] else None
            v = clips.video if "video" in MODE_INPUTS[mode] else None
            p = model.forward_multiframe(a, v, mode, reduce="softmax")
            out[mode] = {"accuracy": 100 * metrics.accuracy(p, clips.targets),
                         "macro_f1": 100 * metrics.macro_f1(p, clips.targets)}
    return out


def first_frame(model, clips):
    return _table(model, clips, frame=0)


def no_eval(model, clips):
    return _table(model, clips, train=True)


def no_grad_missing(model, clips):
    return _table(model, clips, grad=True)


def short_names(model, clips):
    t = _table(model, clips)
    return {m.replace("only", ""): r for m, r in t.items()}


def missing_row(model, clips):
    t = _table(model, clips)
    del t["missingvideoonly"]
    return t


def as_list(model, clips):
    return list(_table(model, clips).values())


def crash(model, clips):
    return model(clips.audio, clips.video, mode="multimodal")  # 5-D frames: the model refuses


def test_the_example_separates_the_modes():
    from avlib.checks.evaluation import _table as reference
    from avlib.checks.evaluation import example

    model, clips = example()
    rows = reference(model, clips)
    assert len(set(rows.values())) == 5, rows  # each mode gives its own (accuracy, macro-F1)
    assert all(a != f for a, f in rows.values())  # micro-F1 (= accuracy) is told apart
    assert reference(model, clips, frame_agg=True)["videoonly"] != rows["videoonly"]
    state = torch.random.get_rng_state()
    example()
    assert torch.equal(state, torch.random.get_rng_state()), "the check must not move the global RNG"


@pytest.mark.parametrize("fn, needle", [
    (fractions, "percent"),
    (single_modality_modes, "mode='audioonly'"),
    (micro_f1, "micro-F1"),
    (all_frames, "averaged over all the frames"),
    (first_frame, "not frame 0"),
    (no_eval, "model.eval()"),
    (no_grad_missing, "torch.no_grad()"),
    (short_names, "unknown"),
    (missing_row, "missing missingvideoonly"),
    (as_list, "should return a dict"),
])
def test_wrong_versions_get_their_hint(fn, needle, run_check):
    run_check.fails(checks.evaluation.ablation_table, fn, hint=needle)


@pytest.mark.parametrize("fn", [good, with_evaluate, with_inference_mode_and_tensors])
def test_right_versions_pass(fn, run_check):
    run_check.passes(checks.evaluation.ablation_table, fn)


def test_skipped_and_crashing(run_check):
    run_check.skips(checks.evaluation.ablation_table)
    run_check.fails(checks.evaluation.ablation_table, crash, hint="raised")
