"""The notebook-03 self-check: right frame samplers pass, typical mistakes get their targeted hint."""

import random

import torch

from avlib import checks


def sampler(mode, generator=None, *, middle=5, high=10, global_rng=False, as_int=False, two=False,
            reverse_all=False, other_draw=False):
    """CAV-MAE's frame sampler, with switches for the usual mistakes."""
    if mode == "middle":
        return middle if as_int else [middle]
    if mode == "all":
        return list(range(9, -1, -1)) if reverse_all else list(range(10))
    if global_rng:
        return [random.randrange(10)]
    if other_draw:
        return [int(torch.rand((), generator=generator) * 10)]
    n = (2,) if two else ()
    i = torch.randint(high, n, generator=generator)
    return i.tolist() if two else [int(i)]


def test_frame_sampler_accepts_reference_and_other_draws(last_line):
    assert checks.vision.frame_sampler(sampler)
    assert "identical to AVDataset" in last_line()
    assert checks.vision.frame_sampler(checks.vision.reference_frame_ids)
    assert checks.vision.frame_sampler(lambda m, g: sampler(m, g, other_draw=True))
    assert "not AVDataset's" in last_line()


def test_frame_sampler_hints(last_line, run_check):
    cases = {
        "middle=4": ({"middle": 4}, "not 4"),
        "as_int": ({"as_int": True}, "not a bare number"),
        "reverse_all": ({"reverse_all": True}, "in order"),
        "high=9": ({"high": 9}, "excludes high"),
        "two": ({"two": True}, "*one* random frame"),
        "global_rng": ({"global_rng": True}, "draw from the generator"),
    }
    for label, (kwargs, phrase) in cases.items():
        assert not checks.vision.frame_sampler(lambda m, g, k=kwargs: sampler(m, g, **k)), label
        line = last_line()
        assert line.startswith("❌") and phrase in line, (label, line)
    assert not checks.vision.frame_sampler(lambda m, g: [10] if m == "random" else sampler(m, g))
    assert "ids run 0..9" in last_line()
    run_check.skips(checks.vision.frame_sampler)
