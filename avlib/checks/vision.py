"""Self-checks for notebook 03 (video to frames): CAV-MAE's train/eval frame sampler.

A sampler ``fn(mode, generator) -> list[int]`` picks which of a clip's 10 stored frames the model sees:
``"random"`` one uniformly drawn frame (training), ``"middle"`` frame 5 (evaluation), ``"all"`` the 10 frames
(test-time frame aggregation). :func:`frame_sampler` compares it with what
:class:`avlib.data.dataset.AVDataset` does for the same ``torch.Generator`` seed and prints a targeted hint
for the usual mistakes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from avlib.checks import FAIL, OK, run
from avlib.data.datafile import NUM_FRAMES
from avlib.data.dataset import frame_ids

__all__ = ["frame_sampler", "reference_frame_ids"]


def reference_frame_ids(mode: str, generator: torch.Generator | None = None) -> list[int]:
    """The frame ids :class:`~avlib.data.dataset.AVDataset` uses for ``frames=mode`` (``"random"`` draws one
    ``torch.randint(10, ())`` from ``generator``, the dataset's first draw when mixup is off)."""
    return frame_ids(mode, generator)


def _ids(out: object) -> list[int] | str:
    """The learner's result as a list of ints, or a hint (str)."""
    if isinstance(out, torch.Tensor):
        out = out.flatten().tolist()
    if isinstance(out, (int, torch.Tensor)) or type(out).__name__ == "int64":
        return "return a list of frame ids, e.g. [5], not a bare number (the 'all' mode returns 10 of them)."
    if not isinstance(out, (list, tuple, range)):
        return f"return a list of frame ids, got {type(out).__name__}."
    try:
        return [int(i) for i in out]
    except (TypeError, ValueError):
        return f"the frame ids must be integers, got {list(out)!r}."


def _run(name: str, fn: Callable, mode: str, seed: int) -> tuple[bool, list[int] | None]:
    ran, out = run(f"{name}({mode!r}, generator)", fn, mode, torch.Generator().manual_seed(seed))
    if not ran:
        return False, None
    ids = _ids(out)
    if isinstance(ids, str):
        print(f"{FAIL} {name}({mode!r}, generator): {ids}")
        return False, None
    return True, ids


def frame_sampler(fn: Callable[[str, torch.Generator], list[int]], draws: int = 300) -> bool:
    """Check ``fn(mode, generator) -> list[int]`` for ``mode`` in ``"middle"``, ``"all"``, ``"random"``.

    ``"random"`` must give one id in 0..9, the same for equally seeded generators, every id over ``draws``
    seeds; it passes for any such draw and says whether it is also AVDataset's draw.
    """
    name = "frame_sampler"
    ok, ids = _run(name, fn, "middle", 0)
    if not ok:
        return False
    if ids != [NUM_FRAMES // 2]:
        if ids == [NUM_FRAMES // 2 - 1]:
            hint = f"CAV-MAE's middle frame is index {NUM_FRAMES // 2} = 10 // 2 (of 0..9), not 4."
        else:
            hint = f"expected [{NUM_FRAMES // 2}] (CAV-MAE evaluates on the middle frame, index 10 // 2)."
        print(f"{FAIL} {name}('middle'): got {ids}; {hint}")
        return False
    ok, ids = _run(name, fn, "all", 0)
    if not ok:
        return False
    if ids != list(range(NUM_FRAMES)):
        hint = ("all 10 frames in order, [0, 1, ..., 9]: list(range(10))." if sorted(ids) != list(range(10))
                else "keep them in order, [0, 1, ..., 9].")
        print(f"{FAIL} {name}('all'): got {ids}; {hint}")
        return False
    drawn, identical = [], True
    for seed in range(draws):
        ok, ids = _run(name, fn, "random", seed)
        if not ok:
            return False
        if len(ids) != 1:
            print(f"{FAIL} {name}('random'): got {ids}; training uses *one* random frame per clip and step, "
                  "return a list with one id.")
            return False
        if not 0 <= ids[0] < NUM_FRAMES:
            print(f"{FAIL} {name}('random'): got frame {ids[0]}; ids run 0..9. torch.randint's upper bound "
                  "is exclusive: torch.randint(10, (), generator=generator) covers 0..9.")
            return False
        _, again = _run(name, fn, "random", seed)
        if again != ids:
            print(f"{FAIL} {name}('random'): two equally seeded generators gave {ids} and {again}; draw from "
                  "the generator (torch.randint(10, (), generator=generator)), not from Python's or torch's "
                  "global random state.")
            return False
        drawn.append(ids[0])
        identical &= ids == reference_frame_ids("random", torch.Generator().manual_seed(seed))
    never = sorted(set(range(NUM_FRAMES)) - set(drawn))
    if never:
        hint = ("frame 9 is never drawn: torch.randint(low, high) excludes high, use torch.randint(10, ...)."
                if never == [NUM_FRAMES - 1] else f"frames {never} never came up in {draws} draws; draw "
                "uniformly from all 10.")
        print(f"{FAIL} {name}('random'): {hint}")
        return False
    note = ("identical to AVDataset's draws for the same seed" if identical else
            "a valid uniform draw, though not AVDataset's (it draws torch.randint(10, (), generator=g))")
    print(f"{OK} {name}: middle = [5], all = 0..9, random = one uniform id in 0..9; {note}")
    return True
