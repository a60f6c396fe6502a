"""Extract the four part-melodies of J.S. Bach's chorales from music21's corpus into ``data/melodies.json``.

Development-time only: music21 is *not* a run-time dependency of the course. Regenerate with::

    pip install --target .dev/pkgs music21
    PYTHONPATH=.dev/pkgs python data/build_melodies.py

Output format (one JSON object, ~0.5 MB)::

    {"source": ..., "ticks_per_quarter": 12,
     "chorales": [{"id": "bwv1.6", "key": "F major", "tonic": 5, "mode": "major", "meter": "4/4",
                   "parts": {"S": [onset, duration, midi_pitch, onset, duration, midi_pitch, ...],
                             "A": [...], "T": [...], "B": [...]}}, ...]}

Onsets and durations are integers in ticks (``ticks_per_quarter`` per quarter note), onsets measured from the
start of the piece; ties are merged and rests are the gaps between notes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

TPQ = 12  # ticks per quarter note: exact for 16ths and triplet 8ths
PART_KEYS = ("S", "A", "T", "B")


def extract(path: Path) -> dict | None:
    from music21 import corpus

    score = corpus.parse(str(path))
    parts = list(score.parts)
    if len(parts) != 4:
        return None
    out: dict[str, list[int]] = {}
    for key, part in zip(PART_KEYS, parts, strict=True):
        flat = part.stripTies().flatten()
        seq: list[int] = []
        last_end = -1
        for n in flat.notes:
            pitch = max(n.pitches, key=lambda p: p.midi).midi  # a chord (rare) keeps its top note
            on = round(float(n.getOffsetInHierarchy(part)) * TPQ)
            dur = round(float(n.quarterLength) * TPQ)
            if dur <= 0 or on < last_end:  # grace notes / overlapping voices: skip
                continue
            seq += [on, dur, int(pitch)]
            last_end = on + dur
        if len(seq) < 3 * 8:
            return None
        out[key] = seq
    k = score.analyze("key")
    ts = score.recurse().getElementsByClass("TimeSignature")
    meter = ts[0].ratioString if len(ts) else "4/4"
    return {"id": path.stem, "key": f"{k.tonic.name} {k.mode}", "tonic": int(k.tonic.pitchClass),
            "mode": k.mode, "meter": meter, "parts": out}


OUT = Path(__file__).resolve().parent / "melodies.json"


def main(out_path: Path = OUT) -> None:
    from music21 import __version__ as m21_version
    from music21 import corpus

    files = sorted(p for p in corpus.getComposer("bach") if p.suffix == ".mxl")
    t0 = time.time()
    chorales = []
    seen: set[tuple] = set()
    for i, path in enumerate(files):
        try:
            c = extract(Path(path))
        except Exception as e:  # noqa: BLE001 - a broken encoding is skipped, and said so
            print(f"skip {path.name}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        if c is None:
            continue
        sig = tuple(c["parts"]["S"][2::3][:24])  # some chorale melodies are harmonised twice: keep one
        if sig in seen:
            continue
        seen.add(sig)
        chorales.append(c)
        if i % 50 == 0:
            print(f"{i}/{len(files)} files, {len(chorales)} chorales, {time.time() - t0:.0f} s",
                  file=sys.stderr)
    doc = {
        "source": ("J.S. Bach, four-part chorales (public domain), encodings shipped in the music21 "
                   f"{m21_version} corpus (music21/corpus/bach); extracted by data/build_melodies.py"),
        "ticks_per_quarter": TPQ,
        "parts": list(PART_KEYS),
        "chorales": chorales,
    }
    text = json.dumps(doc, separators=(",", ":"))
    out_path.write_text(text)
    print(f"wrote {out_path} ({len(text) / 1e3:.0f} kB): {len(chorales)} chorales from {len(files)} files "
          f"in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
