"""The notebook-01 self-checks: right implementations pass, typical mistakes get their targeted hint."""

import json
from collections import Counter
from pathlib import Path

import torch

from avlib import checks
from avlib.data.datafile import Entry, read_datafile


def reader(path, *, base="root", split_labels=True, strip=True, keep_empty=False, check_keys=True,
           as_dict=False, sort=False, concat=False):
    """A datafile reader with switches for the usual mistakes."""
    path = Path(path)
    items = json.loads(path.read_text())["data"]
    root = {"root": path.resolve().parent.parent, "parent": path.resolve().parent, "none": None}[base]
    out = []
    for i, item in enumerate(items):
        if check_keys:
            for k in ("video_id", "wav", "video_path", "labels"):
                if k not in item:
                    raise ValueError(f"{path}: entry {i} lacks {k!r}")

        def fix(p):
            if root is None:
                return p
            return f"{root}/{p}" if concat else str(root / p)

        labels = item["labels"]
        if split_labels:
            parts = labels.split(",")
            parts = [m.strip() for m in parts] if strip else parts
            labels = tuple(m for m in parts if m or keep_empty) if not keep_empty else tuple(parts)
        if as_dict:
            out.append({"video_id": item["video_id"], "wav": fix(item["wav"]),
                        "video_path": fix(item["video_path"]), "labels": labels})
        else:
            out.append(Entry(item["video_id"], fix(item["wav"]), fix(item["video_path"]), labels))
    return sorted(out, key=lambda e: e.video_id) if sort else out


def test_read_datafile_accepts_correct_readers(last_line):
    assert checks.data.read_datafile(read_datafile)
    assert last_line().startswith("✅ read_datafile matches avlib")
    assert checks.data.read_datafile(reader)
    assert checks.data.read_datafile(lambda p: reader(p, as_dict=True))


def test_read_datafile_hints(last_line, run_check):
    cases = {
        "base=parent": ({"base": "parent"}, "path.parent.parent"),
        "base=none": ({"base": "none"}, "resolved against the dataset root"),
        "concat": ({"concat": True}, "used as it is"),
        "no split": ({"split_labels": False}, "split it at commas"),
        "no strip": ({"strip": False}, "strip the spaces"),
        "keep empty": ({"keep_empty": True}, "()"),
        "sorted": ({"sort": True}, "do not sort"),
        "no key check": ({"check_keys": False}, "without 'wav'"),
    }
    for label, (kwargs, phrase) in cases.items():
        assert not checks.data.read_datafile(lambda p, k=kwargs: reader(p, **k)), label
        line = last_line()
        assert line.startswith("❌") and phrase in line, (label, line)
    run_check.skips(checks.data.read_datafile)
    assert not checks.data.read_datafile(lambda p: json.loads(Path(p).read_text()))
    assert "must return a list" in last_line()


def count_ok(entries, mids):
    c = Counter(m for e in entries for m in e.labels)
    return {m: c[m] for m in mids}


def test_count_per_class_verdicts(last_line, run_check):
    assert checks.data.count_per_class(count_ok)
    assert last_line().startswith("✅ count_per_class")
    assert checks.data.count_per_class(lambda e, mids: [count_ok(e, mids)[m] for m in mids])
    assert checks.data.count_per_class(lambda e, mids: torch.tensor([count_ok(e, mids)[m] for m in mids]))
    wrong = {
        "first label only": (lambda e, mids: {m: sum(x.labels[:1] == (m,) for x in e) for m in mids},
                             "for *each* of them"),
        "no zero classes": (lambda e, mids: dict(Counter(m for x in e for m in x.labels)), "-> 0"),
        "empty key": (lambda e, mids: {**count_ok(e, mids), "": 1}, "no class"),
    }
    for label, (fn, phrase) in wrong.items():
        assert not checks.data.count_per_class(fn), label
        line = last_line()
        assert line.startswith("❌") and phrase in line, (label, line)
    run_check.skips(checks.data.count_per_class)
