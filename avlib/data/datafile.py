"""Datafiles (CAV-MAE's JSON clip lists) and label CSVs: reading, validating and writing.

A datafile is ``{"data": [{"video_id", "wav", "video_path", "labels"}, ...]}``:

* ``video_id`` - the clip's name; frames are ``<video_path>/frame_<i>/<video_id>.jpg``, i = 0..9;
* ``wav`` - the clip's audio file (16-kHz mono WAV; any soundfile format and rate is accepted);
* ``video_path`` - the folder that holds the ``frame_<i>`` folders;
* ``labels`` - comma-separated label ``mid``s from the label CSV (``""`` for no label; a JSON list works too).

**Path rule.** Relative ``wav`` and ``video_path`` are resolved against the *dataset root*: the directory that
contains the ``datafiles/`` folder, i.e. ``datafile.parent.parent`` (``<root>/datafiles/train.json`` ->
``<root>``).
Absolute paths are used as they are. :func:`write_datafile` writes paths under the root relative to it, so a
dataset folder can be moved or copied as a whole.

A label CSV has the header ``index,mid,display_name`` (e.g. ``0,/m/09x0r,"Speech"``); rows in index order.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

REQUIRED_KEYS = ("video_id", "wav", "video_path", "labels")
NUM_FRAMES = 10  # frames per clip: frame_0 .. frame_9
# the dataset layout: <root>/datafiles/<split>.json, <root>/labels.csv, <root>/audio_stats.json,
# <root>/audio/<id>.wav, <root>/frames/frame_<i>/<id>.jpg
DATAFILES_DIR = "datafiles"
LABEL_CSV = "labels.csv"
STATS_FILE = "audio_stats.json"  # avlib.audio.AudioStats.save(): {"mean": ..., "std": ...}
AUDIO_DIR = "audio"
FRAMES_DIR = "frames"


@dataclass(frozen=True)
class Entry:
    """One clip of a datafile. ``wav`` and ``video_path`` are absolute after :func:`read_datafile`."""

    video_id: str
    wav: str
    video_path: str
    labels: tuple[str, ...] = ()

    def frame_path(self, i: int) -> Path:
        """``<video_path>/frame_<i>/<video_id>.jpg``."""
        return Path(self.video_path) / f"frame_{i}" / f"{self.video_id}.jpg"

    def to_dict(self) -> dict:
        return {"video_id": self.video_id, "wav": self.wav, "video_path": self.video_path,
                "labels": ",".join(self.labels)}


def dataset_root(datafile: str | Path) -> Path:
    """The directory that relative paths in ``datafile`` are resolved against: ``datafile.parent.parent``."""
    return Path(datafile).resolve().parent.parent


def _parse_labels(value, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(m.strip() for m in value.split(",") if m.strip())
    if isinstance(value, list | tuple) and all(isinstance(m, str) for m in value):
        return tuple(m.strip() for m in value if m.strip())
    raise ValueError(f"{where}: 'labels' must be a comma-separated string of mids (or a list of strings), "
                     f"got {value!r}.")


def read_datafile(path: str | Path) -> list[Entry]:
    """Read and validate a datafile; relative paths are resolved against :func:`dataset_root`.

    The file is read as UTF-8 with or without a byte-order mark, with any line endings (LF or CRLF).
    Raises ``FileNotFoundError`` / ``ValueError`` naming the file, the entry and the fix for a missing file,
    invalid JSON, a missing ``"data"`` list, an entry lacking a required key, or a duplicated ``video_id``.
    Files referenced by the entries are not opened here (the dataset reports those when it reads them).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"datafile {path} does not exist; generate the dataset (python -m avlib "
                                "data) or write one with avlib.data.datafile.write_datafile.")
    try:
        obj = json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM (Excel, Windows editors) is fine
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"datafile {path} is not valid JSON ({e}); it must look like "
                         '{"data": [{"video_id": ..., "wav": ..., "video_path": ..., "labels": ...}]}.'
                         ) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise ValueError(f'datafile {path} must be a JSON object with a "data" list of clips.')
    root = dataset_root(path)
    entries, seen = [], set()
    for i, item in enumerate(obj["data"]):
        where = f"datafile {path}, entry #{i}"
        if not isinstance(item, dict):
            raise ValueError(f"{where} is {type(item).__name__}, not an object with keys "
                             f"{', '.join(REQUIRED_KEYS)}.")
        missing = [k for k in REQUIRED_KEYS if k not in item]
        if missing:
            vid = item.get("video_id", "?")
            raise ValueError(f"{where} (video_id {vid!r}) lacks key(s) {', '.join(map(repr, missing))}; "
                             f"every entry needs {', '.join(REQUIRED_KEYS)} (labels \"\" for an unlabelled "
                             "clip).")
        for k in ("video_id", "wav", "video_path"):
            if not isinstance(item[k], str):
                raise ValueError(f"{where}: {k!r} must be a string, got {item[k]!r}.")
        vid = item["video_id"]
        if not vid:
            raise ValueError(f"{where}: 'video_id' is empty; give every clip a unique name.")
        if vid in seen:
            raise ValueError(f"{where}: video_id {vid!r} appears twice; ids must be unique per datafile.")
        seen.add(vid)
        wav = str(root / item["wav"]) if item["wav"] else ""
        vpath = str(root / item["video_path"]) if item["video_path"] else ""
        entries.append(Entry(vid, wav, vpath, _parse_labels(item["labels"], where)))
    return entries


def _relative(p: str, root: Path) -> str:
    if not p:
        return p
    q = Path(p)
    if not q.is_absolute():
        return q.as_posix()
    try:
        return q.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(q)


def write_datafile(path: str | Path, entries: Iterable[Entry | dict], *, append: bool = False) -> Path:
    """Write ``entries`` as a datafile at ``path`` (parents created). Paths under the dataset root
    (``path.parent.parent``) are stored relative to it, others absolute. ``append=True`` keeps the clips
    already in the file (a ``video_id`` already present is replaced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = dataset_root(path)
    new = []
    for e in entries:
        if isinstance(e, dict):
            missing = [k for k in REQUIRED_KEYS if k not in e]
            if missing:
                raise ValueError(f"write_datafile({path}): entry {e!r} lacks {', '.join(missing)}.")
            e = Entry(e["video_id"], e["wav"], e["video_path"], _parse_labels(e["labels"], f"entry {e!r}"))
        new.append(e)
    old = read_datafile(path) if append and path.is_file() else []
    ids = {e.video_id for e in new}
    merged = [e for e in old if e.video_id not in ids] + new
    data = [{**e.to_dict(), "wav": _relative(e.wav, root), "video_path": _relative(e.video_path, root)}
            for e in merged]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"data": data}, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# ------------------------------------------------------------------------------------------------------------
# labels
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelSet:
    """The classes of a label CSV: ``mids[k]`` and ``names[k]`` for class index k."""

    mids: tuple[str, ...]
    names: tuple[str, ...]
    source: str = ""
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self._index.update({m: k for k, m in enumerate(self.mids)})

    def __len__(self) -> int:
        return len(self.mids)

    def index(self, mid: str, where: str = "") -> int:
        """Class index of ``mid``; a clear ``KeyError`` naming ``where`` if it is not in the CSV."""
        try:
            return self._index[mid]
        except KeyError:
            src = f" ({self.source})" if self.source else ""
            raise KeyError(f"{where + ': ' if where else ''}label {mid!r} is not in the label CSV{src}; add "
                           "a row "
                           f"'index,{mid},<name>' to it or fix the label. Known: {', '.join(self.mids[:8])}"
                           f"{', ...' if len(self) > 8 else ''}.") from None

    def encode(self, mids: Sequence[str], where: str = "") -> Tensor:
        """Multi-hot ``[K]`` float vector of ``mids`` (all zeros for none)."""
        out = torch.zeros(len(self))
        for m in mids:
            out[self.index(m, where)] = 1.0
        return out

    def name(self, k: int) -> str:
        return self.names[k]


def read_label_csv(path: str | Path) -> LabelSet:
    """Read a label CSV with header ``index,mid,display_name`` (indices must be 0..K-1 in order).

    Read as UTF-8 with or without a byte-order mark, CRLF or LF line endings, by the ``csv`` module (quoted
    names may hold commas). Mids and display names must be unique: two classes sharing a name would be
    indistinguishable in predictions, so a repeated name raises ``ValueError`` naming both lines.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label CSV {path} does not exist; write one with the header "
                                "index,mid,display_name (avlib.data.datafile.write_label_csv).")
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as e:
        raise ValueError(f"label CSV {path} is not UTF-8 text ({e}); save it as UTF-8 (CSV UTF-8 in Excel)."
                         ) from None
    if not rows or [c.strip() for c in rows[0]] != ["index", "mid", "display_name"]:
        raise ValueError(f"label CSV {path} must start with the header 'index,mid,display_name', "
                         f"got {rows[0] if rows else 'an empty file'}.")
    mids, names, name_line = [], [], {}
    for ln, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 3:
            raise ValueError(f"label CSV {path}, line {ln}: expected 3 fields index,mid,display_name, got "
                             f"{row}; "
                             "quote names that contain commas.")
        idx, mid, name = (c.strip() for c in row)
        if not idx.isdigit() or int(idx) != len(mids):
            raise ValueError(f"label CSV {path}, line {ln}: index {idx!r} should be {len(mids)} "
                             "(0..K-1 in order).")
        if mid in mids:
            raise ValueError(f"label CSV {path}, line {ln}: mid {mid!r} appears twice.")
        if name in name_line:
            raise ValueError(f"label CSV {path}, line {ln}: display name {name!r} is already used on line "
                             f"{name_line[name]}; give every class its own name.")
        name_line[name] = ln
        mids.append(mid)
        names.append(name)
    if not mids:
        raise ValueError(f"label CSV {path} lists no classes.")
    return LabelSet(tuple(mids), tuple(names), source=str(path))


def write_label_csv(path: str | Path, mids: Sequence[str], names: Sequence[str] | None = None) -> Path:
    """Write a label CSV (``index,mid,display_name``); ``names`` default to the mids."""
    path = Path(path)
    names = list(names) if names is not None else list(mids)
    if len(names) != len(mids):
        raise ValueError(f"write_label_csv({path}): {len(mids)} mids but {len(names)} names.")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "mid", "display_name"])
        for k, (m, n) in enumerate(zip(mids, names, strict=True)):
            w.writerow([k, m, n])
    return path
