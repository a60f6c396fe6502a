"""Sound of the orchestra: soundfonts, melodies, scores, rendering and timbre processing."""

from __future__ import annotations

import numpy as np
import pytest

from avlib.data import synth

SR = 16000


def _f0(x: np.ndarray, sr: int = SR, fmin: float = 100.0, fmax: float = 2000.0) -> float:
    """Fundamental frequency by autocorrelation (parabolic peak interpolation)."""
    x = x - x.mean()
    ac = np.fft.irfft(np.abs(np.fft.rfft(x, 2 * len(x))) ** 2)[: len(x)]
    lo, hi = int(sr / fmax), int(sr / fmin)
    k = lo + int(np.argmax(ac[lo:hi]))
    a, b, c = ac[k - 1], ac[k], ac[k + 1]
    return sr / (k + 0.5 * (a - c) / (a - 2 * b + c))


def test_soundfonts_ship_in_wheels():
    for name in synth.SOUNDFONTS:
        path = synth.soundfont_path(name)
        assert path.suffix == ".sf2" and path.stat().st_size > 1_000_000
    with pytest.raises(ValueError, match="unknown soundfont"):
        synth.soundfont_path("nope")


@pytest.mark.parametrize("name", sorted(synth.SOUNDFONTS))
def test_soundfonts_have_every_program(name):
    melodic, kits = synth.presets(name)
    for inst in synth.INSTRUMENTS.values():
        progs = {p for p, _, _ in inst.programs}
        assert progs & (kits if inst.drums else melodic), (name, inst.mid)
        if not inst.drums:
            assert progs <= melodic, (name, inst.mid)


def test_melodies_are_real_chorales():
    doc = synth.load_melodies()
    assert synth.MELODIES.stat().st_size < 1_000_000
    chorales = doc["chorales"]
    assert len(chorales) >= 300
    for c in chorales[:50]:
        assert set(c["parts"]) == {"S", "A", "T", "B"}
        s = np.asarray(c["parts"]["S"]).reshape(-1, 3)
        b = np.asarray(c["parts"]["B"]).reshape(-1, 3)
        assert (np.diff(s[:, 0]) > 0).all() and (s[:, 1] > 0).all()
        assert 55 <= np.median(s[:, 2]) <= 80 and 36 <= np.median(b[:, 2]) <= 60  # soprano above bass
        steps = np.abs(np.diff(s[:, 2]))
        assert np.median(steps) <= 2  # chorale tunes move mostly by step: not random notes


@pytest.mark.parametrize("mid", sorted(synth.INSTRUMENTS))
def test_compose_stays_in_range_and_is_deterministic(mid):
    inst = synth.INSTRUMENTS[mid]
    a = synth.compose(mid, np.random.default_rng(3), 4.0)
    b = synth.compose(mid, np.random.default_rng(3), 4.0)
    assert a.notes == b.notes and a.program == b.program
    assert len(a.notes) >= 3
    lo = min(p[1] for p in inst.programs)
    hi = max(p[2] for p in inst.programs)
    for n in a.notes:
        assert 0 <= n.start < 4.0 and n.duration > 0 and 1 <= n.velocity <= 127
        assert lo <= n.pitch <= hi, (mid, n)
    if not inst.drums:
        prog_range = next(p for p in inst.programs if p[0] == a.program)
        assert all(prog_range[1] <= n.pitch <= prog_range[2] for n in a.notes)


def test_second_voice_joins_the_first():
    rng = np.random.default_rng(0)
    v1 = synth.compose("violin", rng, 4.0)
    chorale = next(c for c in synth.load_melodies()["chorales"] if c["id"] == v1.info["chorale"])
    v2 = synth.compose("trombone", rng, 4.0, chorale=chorale, line_part="B", bpm=v1.info["bpm"],
                       start=v1.info["start"])
    assert v2.info["chorale"] == v1.info["chorale"] and v2.info["bpm"] == v1.info["bpm"]
    assert np.median([n.pitch for n in v2.notes]) < np.median([n.pitch for n in v1.notes])


def test_render_is_in_tune_and_detune_works():
    note = [synth.Note(0.0, 1.0, 69, 100)]  # A4
    for name in synth.SOUNDFONTS:
        x = synth.render(synth.Voice("flute", 73, note), name, 1.0, SR)
        assert x.shape == (SR,) and x.dtype == np.float32 and np.isfinite(x).all()
        assert abs(_f0(x[4000:12000]) - 440.0) < 6.0, name
    up = synth.render(synth.Voice("flute", 73, note, tuning=1.0), "timgm6mb", 1.0, SR)
    assert abs(_f0(up[4000:12000]) - 440.0 * 2 ** (1 / 12)) < 6.0


def test_render_reuses_the_synth_without_leaking_state():
    rng = np.random.default_rng(1)
    va, vb = synth.compose("piano", rng, 1.0), synth.compose("harp", rng, 1.0)
    a1 = synth.render(va, "timgm6mb", 1.0, SR)
    synth.render(vb, "timgm6mb", 1.0, SR)  # leaves ringing notes behind
    a2 = synth.render(va, "timgm6mb", 1.0, SR)
    assert np.array_equal(a1, a2)
    assert synth.rms(a1) > 1e-3


def test_drums_render_on_the_percussion_channel():
    v = synth.compose("maracas", np.random.default_rng(0), 1.0)
    assert v.drums and {n.pitch for n in v.notes} == {70}
    x = synth.render(v, "merlin", 1.0, SR)
    spec = np.abs(np.fft.rfft(x))
    f = np.fft.rfftfreq(len(x), 1 / SR)
    assert spec[f > 2000].sum() > spec[f < 500].sum()  # a shaker is noise-like and bright


def test_resample_down_keeps_the_band_and_removes_aliases():
    t = np.arange(32000) / 32000
    x = np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 11000 * t)  # 11 kHz would alias at 16 kHz
    y = synth.resample_down(x.astype(np.float32), 2)
    spec = np.abs(np.fft.rfft(y)) / len(y)
    f = np.fft.rfftfreq(len(y), 1 / 16000)
    assert spec[np.argmin(np.abs(f - 1000))] > 0.4
    assert spec[np.argmin(np.abs(f - 5000))] < 1e-3  # where 11 kHz would fold to


def test_timbre_processing():
    rng = np.random.default_rng(0)
    x = synth.render(synth.compose("trumpet", rng, 2.0), "timgm6mb", 2.0, SR)
    for fn in (synth.equalize, synth.compress, synth.reverb, synth.add_noise):
        y, info = fn(x, SR, np.random.default_rng(5))
        assert y.shape == x.shape and np.isfinite(y).all() and isinstance(info, dict)
        y2, _ = fn(x, SR, np.random.default_rng(5))
        assert np.array_equal(y, y2)
    y, info = synth.master(x, np.random.default_rng(2))
    assert np.abs(y).max() <= 0.98 + 1e-6
    assert abs(20 * np.log10(synth.rms(y)) - info["level_dbfs"]) < 0.1 or np.abs(y).max() > 0.97
    spectra = [np.abs(np.fft.rfft(synth.equalize(x, SR, np.random.default_rng(s))[0])) for s in range(2)]
    assert not np.allclose(spectra[0], spectra[1], rtol=0.05)  # EQ changes the colour
