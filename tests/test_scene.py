"""Pictures of the orchestra: icons, motion from sound, scene drawing."""

from __future__ import annotations

import numpy as np
import pytest

from avlib.data import scene as S
from avlib.data import synth
from avlib.data.orchestra import TRAIN_STYLES, read_classes

MIDS = [m for m, _ in read_classes()]


def _motion(loud: float, pitch: float = 0.5, seconds: float = 1.0) -> S.Motion:
    n = int(seconds / 0.02)
    return S.Motion(np.array([]), np.array([]), np.array([0.0]), np.array([pitch]),
                    np.full(n, loud, np.float32), 0.02)


def test_every_class_drawn_by_several_styles_with_alpha():
    styles = S.styles()
    assert len(styles) >= 10
    for style, info in styles.items():
        assert info["license"] and info["package"]
        icons = S.load_icons(style)
        assert set(icons) <= set(MIDS) and len(icons) >= 5, style
        for mid, variants in icons.items():
            for icon in variants:
                assert icon.shape == (128, 128, 4) and icon.dtype == np.uint8
                a = icon[..., 3]
                assert a[0, 0] == 0 and 0.1 < (a > 128).mean() < 0.95, (style, mid)  # transparent border
    for mid in MIDS:  # every class has pictures in training styles and in the held-out test style
        assert len(S.picture_pool(mid, TRAIN_STYLES)) >= 3, mid
        assert S.picture_pool(mid, ("openmoji",)), mid
    with pytest.raises(ValueError, match="no icon style"):
        S.picture_pool("harp", ("mdi",))


def test_styles_look_different():
    """The test style is not a recolouring of a training style: per-class icon shapes differ."""
    def mask(st: str, m: str) -> np.ndarray:
        return S.load_icons(st)[m][0][..., 3] > 128

    for st in TRAIN_STYLES:
        common = [m for m in MIDS if m in S.styles()[st]["icons"]]
        a = np.stack([mask("openmoji", m) for m in common])
        b = np.stack([mask(st, m) for m in common])
        iou = (a & b).sum((1, 2)) / (a | b).sum((1, 2))
        assert iou.mean() < 0.75, (st, iou.mean())


def test_scene_without_distractor_plain_and_grey():
    rng = np.random.default_rng(3)
    icon = S.load_icons("noto")["violin"][0]
    scn = S.sample_scene(rng, icon, None, False, S.fake_motion(rng, 1.0), 1.0, grey_p=1.0)
    assert scn.distractor is None and scn.grey and not scn.info["distractor"]
    img = S.draw(scn, 0.5, 64)
    assert img.shape == (64, 64, 3)
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])  # grey
    scn.background["kind"] = "plain"
    scn.cache.clear()
    bg = S._background(scn.background, 16, 0)
    assert np.ptp(bg.reshape(-1, 3), axis=0).max() == 0  # one colour


def test_motion_from_audio_follows_the_notes():
    notes = [synth.Note(0.1, 0.3, 60, 100), synth.Note(0.5, 0.3, 72, 60)]
    audio = np.zeros(16000, np.float32)
    audio[1600:6400] = 0.5
    m = S.motion_from_audio(notes, audio, 16000)
    loud, pulse, pitch = m.at(0.15)
    assert loud > 0.8 and pulse > 0.5 and pitch == 0.0
    loud, pulse, pitch = m.at(0.9)
    assert loud < 0.1 and pulse < 0.2 and pitch == 1.0  # the high note is the last one heard
    drums = S.motion_from_audio(notes, audio, 16000, drums=True)
    assert drums.at(0.9)[2] == 0.5


def test_sounder_grows_with_loudness_and_rises_with_pitch():
    icon = S.load_icons("noto")["violin"][0]
    quiet = S.Sprite(icon, 0.5, 0.5, 0.5, 0.0, False, _motion(0.0, pitch=0.0), react=1.0)
    loud = S.Sprite(icon, 0.5, 0.5, 0.5, 0.0, False, _motion(1.0, pitch=1.0), react=1.0)
    iq, _, yq, _ = S._sprite_image(quiet, 0.5, 96)
    il, _, yl, _ = S._sprite_image(loud, 0.5, 96)
    assert il.shape[0] > iq.shape[0] * 1.2
    assert yl < yq  # higher pitch -> higher in the frame (smaller y)


def test_paste_keeps_alpha():
    dst = np.full((40, 40, 3), 0.25, np.float32)
    src = np.zeros((20, 20, 4), np.uint8)
    src[5:15, 5:15] = (255, 0, 0, 255)
    S._paste(dst, src, 20, 20)
    assert np.allclose(dst[10, 10], 0.25) and np.allclose(dst[20, 20], (1, 0, 0))  # no box around the icon
    S._paste(dst, src, -5, 38)  # partly outside: clipped, no error


def test_tint_paints_silhouettes():
    icon = S.load_icons("game-icons")["harp"][0]
    out = S.jitter_colour(icon, np.random.default_rng(0), tint=np.array([1.0, 0.5, 0.0], np.float32))
    on = out[..., 3] > 200
    assert out[on, 0].mean() > 200 and out[on, 2].mean() < 10
    assert np.array_equal(out[..., 3], icon[..., 3])


def _scene(seed: int = 0) -> S.Scene:
    rng = np.random.default_rng(seed)
    icons = S.load_icons("twemoji")
    return S.sample_scene(rng, icons["trumpet"][0], icons["harp"][0], False, S.fake_motion(rng, 2.0), 2.0)


@pytest.mark.parametrize("size", [32, 96])
def test_draw_is_deterministic_and_varies(size):
    sc = _scene()
    a, b = S.draw(sc, 0.3, size, 0), S.draw(_scene(), 0.3, size, 0)
    assert a.shape == (size, size, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, S.draw(_scene(1), 0.3, size, 0))


def test_backgrounds_are_varied():
    means = []
    for kind in S.BACKGROUNDS:
        sc = _scene(2)
        sc.background["kind"] = kind
        img = S._background(sc.background, 48, 2)
        assert img.shape == (52, 52, 3) and 0 <= img.min() and img.max() <= 1
        means.append(img.std())
    assert len({round(m, 3) for m in means}) == len(S.BACKGROUNDS)
