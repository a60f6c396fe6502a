"""Self-checks for notebook 01 (the orchestra): a datafile reader and counting clips per class.

:func:`read_datafile` writes small datafiles into a temporary dataset folder and compares the learner's reader
with :func:`avlib.data.datafile.read_datafile` (path rule, label splitting, order, a clear error for a broken
entry); :func:`count_per_class` compares a per-class count with the multi-hot label sums that
:class:`avlib.data.datafile.LabelSet` gives. Both print a targeted hint for the usual mistakes.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from avlib.checks import FAIL, OK, run
from avlib.data.datafile import Entry, LabelSet
from avlib.data.datafile import read_datafile as _avlib_read_datafile

__all__ = ["read_datafile", "count_per_class"]


# ----------------------------------------------------------------------------------------------------------
# read_datafile
# ----------------------------------------------------------------------------------------------------------
def _as_tuple(item: object) -> tuple | str:
    """``(video_id, wav, video_path, labels)`` of an Entry or dict, or a hint (str) if it is neither."""
    if isinstance(item, Entry):
        return item.video_id, item.wav, item.video_path, item.labels
    if isinstance(item, dict):
        missing = [k for k in ("video_id", "wav", "video_path", "labels") if k not in item]
        if missing:
            return f"an entry lacks the key(s) {', '.join(missing)}."
        return item["video_id"], item["wav"], item["video_path"], item["labels"]
    return f"items must be Entry objects (or dicts), got {type(item).__name__}."


def _example_dataset(tmp: Path) -> tuple[Path, Path, list[dict]]:
    """A dataset ``tmp/ds`` with ``datafiles/train.json``: relative, absolute and multi-label entries."""
    root = tmp / "ds"
    elsewhere = tmp / "elsewhere"
    data = [
        {"video_id": "clip_b", "wav": "audio/clip_b.wav", "video_path": "frames", "labels": "violin"},
        {"video_id": "clip_a", "wav": "audio/clip_a.wav", "video_path": "frames", "labels": "piano,flute"},
        {"video_id": "clip_c", "wav": str(elsewhere / "clip_c.wav"), "video_path": str(elsewhere / "frames"),
         "labels": ""},
        {"video_id": "clip_d", "wav": "audio/clip_d.wav", "video_path": "frames", "labels": " harp , conga "},
    ]
    path = root / "datafiles" / "train.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"data": data}, indent=1))
    return root, path, data


def _path_hint(got: str, expected: str, raw: str, root: Path, field: str) -> str:
    """Why ``got`` (the learner's path for ``raw``) differs from ``expected``; "" if it is the same file."""
    if got == expected or Path(got).resolve() == Path(expected).resolve():
        return ""
    if Path(raw).is_absolute():
        return (f"the absolute {field} {raw!r} must be used as it is (Path(root) / raw keeps an absolute "
                f"raw); you gave {got!r}.")
    if Path(got) == Path(raw):
        return (f"relative paths must be resolved against the dataset root: {field} {raw!r} -> "
                f"root / {raw!r} with root = path.parent.parent (the folder that holds datafiles/).")
    if Path(got).resolve() == (root / "datafiles" / raw).resolve():
        return (f"{field} {raw!r} was resolved against the datafiles/ folder (path.parent); the dataset "
                "root is path.parent.parent, the folder that holds datafiles/.")
    return f"{field} {raw!r} should become {expected!r} (root / {raw!r}), got {got!r}."


def read_datafile(fn: Callable[[Path], Sequence]) -> bool:
    """Check ``fn(path) -> list[Entry]`` (dicts with the same keys are accepted) against
    :func:`avlib.data.datafile.read_datafile`: order, ids, paths resolved against ``path.parent.parent``,
    labels split into a tuple of mids, and a ``ValueError`` naming the missing key of a broken entry."""
    name = "read_datafile"
    with tempfile.TemporaryDirectory() as tmp:
        root, path, raw = _example_dataset(Path(tmp).resolve())
        expected = _avlib_read_datafile(path)
        ran, got = run(name, fn, path)
        if not ran:
            return False
        if not isinstance(got, (list, tuple)):
            print(f"{FAIL} {name} must return a list of entries, got {type(got).__name__}.")
            return False
        if len(got) != len(expected):
            print(f"{FAIL} {name} returned {len(got)} entries for a datafile with {len(expected)} clips; "
                  'return one entry per item of the "data" list.')
            return False
        for i, (item, exp, r) in enumerate(zip(got, expected, raw, strict=True)):
            t = _as_tuple(item)
            if isinstance(t, str):
                print(f"{FAIL} {name}: {t}")
                return False
            vid, wav, vpath, labels = t
            if vid != exp.video_id:
                ids = [x.video_id for x in expected]
                print(f"{FAIL} {name}: entry {i} has video_id {vid!r}, expected {exp.video_id!r}; keep the "
                      f"file's order ({ids}), do not sort.")
                return False
            for field, g, e in (("wav", wav, exp.wav), ("video_path", vpath, exp.video_path)):
                hint = _path_hint(str(g), e, r[field], root, field)
                if hint:
                    print(f"{FAIL} {name}, entry {vid!r}: {hint}")
                    return False
            if isinstance(labels, str):
                print(f"{FAIL} {name}, entry {vid!r}: labels must be a tuple of mids, got the string "
                      f"{labels!r}; split it at commas: tuple(m.strip() for m in s.split(',') if m.strip()).")
                return False
            if tuple(labels) != exp.labels:
                if r["labels"] == "" and tuple(labels) == ("",):
                    hint = "an empty labels string means *no* label: () rather than ('',)."
                elif tuple(m.strip() for m in labels) == exp.labels:
                    hint = "strip the spaces around each mid (' harp ' -> 'harp')."
                else:
                    hint = f"the labels {r['labels']!r} should give {exp.labels}, got {tuple(labels)}."
                print(f"{FAIL} {name}, entry {vid!r}: {hint}")
                return False
        # a broken entry must raise a clear error
        bad = root / "datafiles" / "broken.json"
        bad.write_text(json.dumps({"data": [{"video_id": "clip_x", "video_path": "frames", "labels": ""}]}))
        try:
            fn(bad)
        except ValueError as e:
            if "wav" not in str(e):
                print(f"{FAIL} {name}: the ValueError for an entry without 'wav' should name the missing "
                      f"key, got: {e}")
                return False
        except Exception as e:  # noqa: BLE001
            print(f"{FAIL} {name}: an entry without 'wav' raised {type(e).__name__}: {e}; check the keys and "
                  "raise ValueError(f\"{path}: entry {i} lacks 'wav'\"), naming the file and entry to fix.")
            return False
        else:
            print(f"{FAIL} {name}: an entry without 'wav' was accepted; check that every entry has video_id, "
                  "wav, video_path and labels, and raise ValueError naming the file and the missing key.")
            return False
    print(f"{OK} {name} matches avlib (order, relative + absolute paths, labels, error on a broken entry)")
    return True


# ----------------------------------------------------------------------------------------------------------
# count_per_class
# ----------------------------------------------------------------------------------------------------------
_MIDS = ("piano", "violin", "flute", "harp", "conga")


def _count_example() -> list[Entry]:
    labels = [("violin",), ("piano", "flute"), (), ("violin",), ("harp", "violin"), ("piano",), ("violin",)]
    return [Entry(f"clip_{i}", f"/x/{i}.wav", "/x/frames", lab) for i, lab in enumerate(labels)]


def _reference_counts(entries: Sequence[Entry], mids: Sequence[str]) -> dict[str, int]:
    labelset = LabelSet(tuple(mids), tuple(mids))
    targets = torch.stack([labelset.encode(e.labels) for e in entries])  # [N, K] multi-hot
    return {m: int(c) for m, c in zip(mids, targets.sum(0).tolist(), strict=True)}  # [K] -> {mid: count}


def count_per_class(fn: Callable[[Sequence[Entry], Sequence[str]], object]) -> bool:
    """Check ``fn(entries, mids) -> {mid: count}`` (every mid, 0 for a class without clips; a clip with two
    labels counts for both, an unlabelled clip for none). A list or tensor of counts in ``mids`` order is
    accepted too."""
    name = "count_per_class"
    entries, mids = _count_example(), _MIDS
    expected = _reference_counts(entries, mids)
    ran, got = run(name, fn, entries, list(mids))
    if not ran:
        return False
    if isinstance(got, torch.Tensor):
        got = got.tolist()
    if isinstance(got, (list, tuple)):
        if len(got) != len(mids):
            print(f"{FAIL} {name} returned {len(got)} counts for {len(mids)} classes.")
            return False
        got = dict(zip(mids, got, strict=True))
    if not isinstance(got, dict):
        print(f"{FAIL} {name} must return a dict {{mid: count}}, got {type(got).__name__}.")
        return False
    got = {k: int(v) for k, v in got.items()}
    if got == expected:
        print(f"{OK} {name} matches avlib (multi-label, unlabelled and empty classes)")
        return True
    missing = [m for m in mids if m not in got]
    extra = [k for k in got if k not in mids]
    first_only = {m: 0 for m in mids}
    for e in entries:
        if e.labels:
            first_only[e.labels[0]] += 1
    if "" in extra or None in extra:
        hint = "an unlabelled clip (labels == ()) counts for no class; do not add a '' key."
    elif missing and all(expected[m] == 0 for m in missing):
        hint = (f"every class needs a count, also those without clips: {missing} -> 0 (start from "
                "{m: 0 for m in mids}).")
    elif missing or extra:
        hint = f"the keys must be exactly the mids {list(mids)}."
    elif got == first_only:
        hint = "a clip with several labels counts once for *each* of them, not only for its first label."
    elif sum(got.values()) == len(entries):
        hint = ("count labels, not clips: a clip with two labels adds 1 to two classes, an unlabelled one "
                "to none.")
    else:
        diff = {m: (got[m], expected[m]) for m in mids if got[m] != expected[m]}
        hint = f"(got, expected) per wrong class: {diff}."
    print(f"{FAIL} {name}: {hint}")
    return False
