"""Pictures for the orchestra: an instrument icon on a varied background that moves with its own music.

A :class:`Scene` is sampled once per clip (:func:`sample_scene`) and then drawn at any time ``t`` and any size
(:func:`draw`): the 10 stored frames and the smoother, larger ``.mp4`` come from the same scene.

* The **sounding** instrument follows its :class:`Motion` - loudness sets its size, the pitch of the current
  note its height (a moving piano roll), note onsets make it jump and flash - so a frame can be matched to
  *this* sound, not only to the class.
* In a minority of clips a silent **distractor** instrument of another class stands at the side, smaller, and
  moves with a fake motion of the same statistics; the sounder stays larger, more central and usually in front,
  so most frames show one instrument and the rest still say which one sounds.
* Backgrounds (plain, gradients, spotlights, wallpaper, bokeh, textures, rooms), placement, scale, rotation,
  colour jitter, grey-scale, partial occlusion, lighting flicker, camera shake, blur and pixel noise vary.

Icons are RGBA PNGs under ``data/icons/<style>/`` (see ``data/README.md``); their alpha channel is kept.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from avlib import env

ICONS = env.ROOT / "data" / "icons"


@functools.lru_cache(maxsize=1)
def styles() -> dict[str, dict]:
    """Icon styles: style name -> manifest entry (package, licence, monochrome, icon names per class)."""
    path = ICONS / "styles.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: it is part of the repository (restore it with git, or "
                                "regenerate the icons with data/build_icons.py).")
    return json.loads(path.read_text())


@functools.lru_cache(maxsize=32)
def load_icons(style: str) -> dict[str, list[np.ndarray]]:
    """Class mid -> list of RGBA uint8 icons [S, S, 4] (several picture variants where the set has them)."""
    if style not in styles():
        raise ValueError(f"unknown icon style {style!r}; choose one of {', '.join(styles())}.")
    out: dict[str, list[np.ndarray]] = {}
    for mid, names in styles()[style]["icons"].items():
        imgs = []
        for k in range(len(names)):
            path = ICONS / style / (f"{mid}.png" if k == 0 else f"{mid}-{k + 1}.png")
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: restore data/icons with git or rerun "
                                        "data/build_icons.py.")
            imgs.append(np.asarray(Image.open(path).convert("RGBA")))
        out[mid] = imgs
    return out


def picture_pool(mid: str, styles_: tuple[str, ...] | list[str]) -> list[tuple[str, int]]:
    """Every picture of class ``mid`` in ``styles_``: ``[(style, variant index), ...]`` (styles may skip classes)."""
    pool = [(s, k) for s in styles_ for k in range(len(styles()[s]["icons"].get(mid, [])))]
    if not pool:
        raise ValueError(f"no icon style of {list(styles_)} draws {mid!r}: add one in data/build_icons.py.")
    return pool


# ------------------------------------------------------------------------------------------------------------
# motion: what makes a picture follow a sound
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Motion:
    """Time courses that drive one instrument's picture.

    ``onsets`` note start times (s) and their ``strengths`` (0..1); ``pitch_times``/``pitch_levels`` a step
    function of the current note's height (0 = lowest of the clip, 1 = highest); ``loudness`` an envelope
    (0..1) sampled every ``hop`` seconds.
    """

    onsets: np.ndarray
    strengths: np.ndarray
    pitch_times: np.ndarray
    pitch_levels: np.ndarray
    loudness: np.ndarray
    hop: float

    def at(self, t: float) -> tuple[float, float, float]:
        """(loudness, onset pulse, pitch level) at time ``t``, each in [0, 1]."""
        i = int(np.clip(round(t / self.hop), 0, len(self.loudness) - 1)) if len(self.loudness) else 0
        loud = float(self.loudness[i]) if len(self.loudness) else 0.0
        dt = t - self.onsets
        past = dt >= 0
        pulse = float(np.max(self.strengths[past] * np.exp(-dt[past] / 0.15), initial=0.0))
        j = int(np.searchsorted(self.pitch_times, t, side="right")) - 1
        pitch = float(self.pitch_levels[j]) if j >= 0 and len(self.pitch_levels) else 0.5
        return loud, min(pulse, 1.0), pitch


def motion_from_audio(notes: list, audio: np.ndarray, sample_rate: int, hop: float = 0.02,
                      drums: bool = False) -> Motion:
    """The :class:`Motion` of a rendered voice: its notes (``synth.Note``) and its waveform ``audio``."""
    n = max(1, int(round(len(audio) / sample_rate / hop)))
    w = max(1, int(hop * sample_rate))
    frames = np.resize(np.asarray(audio, np.float64), n * w).reshape(n, w)  # [n, w]
    env_ = np.sqrt(np.mean(frames ** 2, axis=1))
    env_ = np.convolve(env_, np.ones(5) / 5, mode="same")
    loud = np.clip(env_ / (env_.max() + 1e-9), 0, 1)
    starts = np.array([x.start for x in notes], dtype=np.float64)
    vel = np.array([x.velocity for x in notes], dtype=np.float64)
    order = np.argsort(starts, kind="stable")
    starts, vel = starts[order], vel[order]
    strengths = np.clip(vel / 127.0, 0, 1) if len(vel) else vel
    if drums or not len(notes):
        levels = np.full(len(starts), 0.5)
    else:
        pitch = np.array([notes[i].pitch for i in order], dtype=np.float64)
        lo, hi = pitch.min(), pitch.max()
        levels = (pitch - lo) / (hi - lo) if hi > lo else np.full(len(pitch), 0.5)
    return Motion(starts, strengths, starts.copy(), levels, loud.astype(np.float32), hop)


def fake_motion(rng: np.random.Generator, seconds: float, hop: float = 0.02) -> Motion:
    """A motion with the statistics of a real one but driven by no sound (for the silent distractor)."""
    rate = float(rng.uniform(1.0, 5.0))
    k = max(1, int(rng.poisson(rate * seconds)))
    starts = np.sort(rng.uniform(0, seconds, k))
    strengths = rng.uniform(0.4, 1.0, k)
    levels = np.clip(0.5 + np.cumsum(rng.normal(0, 0.2, k)), 0, 1)
    n = max(1, int(round(seconds / hop)))
    t = np.arange(n) * hop
    loud = 0.5 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.1, 0.6) * t + rng.uniform(0, 6.3))
    for s, a in zip(starts, strengths, strict=True):
        loud += 0.4 * a * np.exp(-np.clip(t - s, 0, None) / 0.3) * (t >= s)
    loud = np.clip(loud / loud.max(), 0, 1)
    return Motion(starts, strengths, starts.copy(), levels, loud.astype(np.float32), hop)


# ------------------------------------------------------------------------------------------------------------
# the scene
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Sprite:
    """One instrument picture in a scene (positions relative to the frame, 0..1)."""

    icon: np.ndarray  # RGBA uint8 [S, S, 4], colour-jittered already
    x: float
    y: float
    scale: float  # icon height / frame height
    angle: float  # degrees
    flip: bool
    motion: Motion
    react: float  # how strongly it moves with its motion (0..1)


@dataclass
class Scene:
    """Everything needed to draw the frames of one clip at any time and size."""

    background: dict
    sounder: Sprite
    distractor: Sprite | None  # None: the sounder is alone in the picture
    occluder: dict | None
    noise: float  # pixel noise sigma (0..255 scale)
    blur: float  # Gaussian blur radius in pixels at 128 px
    flicker: float  # lighting flicker depth
    shake: float  # camera shake (fraction of the frame)
    seed: int
    grey: bool = False  # drawn in grey-scale
    info: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict, repr=False)  # (size, margin) -> background image


def _random_colour(rng: np.random.Generator, sat: tuple[float, float] = (0.1, 0.8),
                   val: tuple[float, float] = (0.15, 0.95)) -> np.ndarray:
    h, s, v = rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, u = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, u, p), (q, v, p), (p, v, u), (p, q, v), (u, p, v), (v, p, q)][i], np.float32)


_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
_RGB = np.linalg.inv(_YIQ).astype(np.float32)


def jitter_colour(icon: np.ndarray, rng: np.random.Generator, hue_deg: float = 18.0,
                  tint: np.ndarray | None = None) -> np.ndarray:
    """Colour-jitter an RGBA icon (hue rotation, saturation, brightness in YIQ space) or tint a silhouette."""
    rgb = icon[..., :3].astype(np.float32) / 255.0
    if tint is not None:  # monochrome silhouette: paint it, with a little shading from top to bottom
        shade = np.linspace(1.1, 0.85, icon.shape[0], dtype=np.float32)[:, None, None]
        rgb = np.clip(tint[None, None, :] * shade, 0, 1) * np.ones_like(rgb)
    else:
        yiq = rgb @ _YIQ.T  # [S, S, 3]
        th = np.deg2rad(rng.uniform(-hue_deg, hue_deg))
        sat, bri = rng.uniform(0.7, 1.3), rng.uniform(0.8, 1.15)
        rot = np.array([[1, 0, 0], [0, np.cos(th), -np.sin(th)], [0, np.sin(th), np.cos(th)]], np.float32)
        yiq = yiq @ rot.T * np.array([bri, sat, sat], np.float32)
        rgb = np.clip(yiq @ _RGB.T, 0, 1)
    return np.dstack([(rgb * 255).round().astype(np.uint8), icon[..., 3:]])


BACKGROUNDS = ("plain", "gradient", "spotlight", "stripes", "checks", "bokeh", "texture", "room")


def sample_scene(rng: np.random.Generator, sounder: np.ndarray, distractor: np.ndarray | None,
                 monochrome: bool | tuple[bool, bool], sounder_motion: Motion, seconds: float,
                 grey_p: float = 0.1) -> Scene:
    """Draw the random layout of one clip: background, placements, jitter, occluder, noise.

    ``distractor`` None leaves the sounder alone; ``monochrome`` (per sprite, or one flag for both) marks
    silhouettes to be painted in a colour that stands out; ``grey_p`` is the chance of a grey-scale clip.
    """
    mono = (monochrome, monochrome) if isinstance(monochrome, bool) else tuple(monochrome)
    bg_kind = str(rng.choice(BACKGROUNDS))
    background = {"kind": bg_kind, "c1": _random_colour(rng), "c2": _random_colour(rng),
                  "c3": _random_colour(rng, (0.3, 1.0), (0.5, 1.0)), "angle": float(rng.uniform(0, np.pi)),
                  "period": float(rng.uniform(0.08, 0.3)), "horizon": float(rng.uniform(0.55, 0.8)),
                  "cx": float(rng.uniform(0.25, 0.75)), "cy": float(rng.uniform(0.2, 0.6)),
                  "seed": int(rng.integers(2 ** 31))}
    tints = [None, None]
    lum = float(_background(background, 32, 0).mean(axis=(0, 1)) @ _YIQ[0])
    for k in range(2):
        if mono[k]:  # silhouettes: a colour that stands out from the background
            tints[k] = _random_colour(rng, (0.0, 0.9), (0.02, 0.3) if lum > 0.45 else (0.75, 1.0))
    sounder = jitter_colour(sounder, rng, tint=tints[0])
    left = rng.random() < 0.5
    alone = distractor is None
    s_sprite = Sprite(sounder, x=float(rng.uniform(0.38, 0.62) if not alone else rng.uniform(0.3, 0.7)),
                      y=float(rng.uniform(0.42, 0.58) if not alone else rng.uniform(0.35, 0.65)),
                      scale=float(rng.uniform(0.46, 0.66) if not alone else rng.uniform(0.45, 0.85)),
                      angle=float(rng.normal(0, 12)), flip=bool(rng.random() < 0.5), motion=sounder_motion,
                      react=float(rng.uniform(0.6, 1.0)))
    d_sprite = None
    if not alone:
        d_sprite = Sprite(jitter_colour(distractor, rng, tint=tints[1]),
                          x=float(rng.uniform(0.1, 0.28) if left else rng.uniform(0.72, 0.9)),
                          y=float(rng.uniform(0.2, 0.8)), scale=float(rng.uniform(0.24, 0.40)),
                          angle=float(rng.normal(0, 15)), flip=bool(rng.random() < 0.5),
                          motion=fake_motion(rng, seconds), react=float(rng.uniform(0.4, 1.0)))
    occluder = None
    if rng.random() < 0.45:
        target = s_sprite if alone or rng.random() < 0.7 else d_sprite
        occluder = {"shape": str(rng.choice(["rect", "ellipse", "stand", "bar"])),
                    "x": target.x + float(rng.normal(0, 0.12)), "y": target.y + float(rng.uniform(0.0, 0.25)),
                    "w": float(rng.uniform(0.1, 0.35)), "h": float(rng.uniform(0.08, 0.3)),
                    "colour": _random_colour(rng), "alpha": float(rng.uniform(0.75, 1.0))}
    return Scene(background=background, sounder=s_sprite, distractor=d_sprite, occluder=occluder,
                 noise=float(rng.uniform(1.0, 9.0)),
                 blur=float(rng.choice([0.0, 0.0, rng.uniform(0.3, 1.2)])),
                 flicker=float(rng.uniform(0.0, 0.12)), shake=float(rng.uniform(0.0, 0.02)),
                 seed=int(rng.integers(2 ** 31)), grey=bool(rng.random() < grey_p),
                 info={"background": bg_kind, "occluded": occluder is not None, "distractor": not alone,
                       "distractor_left": bool(left), "distractor_front": bool(rng.random() < 0.15)})


def _background(bg: dict, size: int, margin: int) -> np.ndarray:
    """The background image [size + 2 margin, size + 2 margin, 3] float32 in [0, 1]."""
    n = size + 2 * margin
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n  # [n, n] each
    c1, c2, c3 = bg["c1"], bg["c2"], bg["c3"]
    kind = bg["kind"]
    rng = np.random.default_rng(bg["seed"])
    if kind == "plain":
        img = np.broadcast_to(c1, (n, n, 3)).copy()
    elif kind == "gradient":
        u = np.cos(bg["angle"]) * xx + np.sin(bg["angle"]) * yy
        u = (u - u.min()) / (np.ptp(u) + 1e-6)
        img = c1 * (1 - u[..., None]) + c2 * u[..., None]
    elif kind == "spotlight":
        r = np.sqrt((xx - bg["cx"]) ** 2 + (yy - bg["cy"]) ** 2)
        u = np.clip(r / 0.6, 0, 1)[..., None]
        img = (0.35 * c1 + 0.65 * c3) * (1 - u) + c1 * 0.35 * u
    elif kind in ("stripes", "checks"):
        u = np.cos(bg["angle"]) * xx + np.sin(bg["angle"]) * yy
        s = (np.floor(u / bg["period"]) % 2).astype(np.float32)
        if kind == "checks":
            v = -np.sin(bg["angle"]) * xx + np.cos(bg["angle"]) * yy
            s = np.abs(s - (np.floor(v / bg["period"]) % 2))
        img = c1 * (1 - 0.35 * s[..., None]) + c2 * 0.35 * s[..., None]
    elif kind == "bokeh":
        img = np.broadcast_to(c1 * 0.6, (n, n, 3)).copy()
        for _ in range(int(rng.integers(6, 16))):
            cx, cy, rad = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.15)
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * rad ** 2))  # [n, n]
            a = blob[..., None] * rng.uniform(0.2, 0.6)
            img = img * (1 - a) + _random_colour(rng, (0.3, 1.0), (0.6, 1.0)) * a
    elif kind == "texture":
        low = rng.standard_normal((6, 6)).astype(np.float32)
        u = np.asarray(Image.fromarray(low).resize((n, n), Image.BICUBIC))
        fine = rng.standard_normal((n // 4 + 1, n // 4 + 1)).astype(np.float32)
        u = u + 0.3 * np.asarray(Image.fromarray(fine).resize((n, n), Image.BILINEAR))
        u = (u - u.min()) / (np.ptp(u) + 1e-6)
        img = c1 * (1 - u[..., None]) + c2 * u[..., None]
    elif kind == "room":
        wall = c1 * (0.8 + 0.2 * (1 - yy[..., None]))
        floor = c2 * (0.6 + 0.4 * yy[..., None])
        img = np.where((yy > bg["horizon"])[..., None], floor, wall)
    else:
        raise ValueError(f"unknown background {kind!r}")
    return np.clip(img, 0, 1).astype(np.float32)


def _paste(dst: np.ndarray, src: np.ndarray, cx: float, cy: float, gain: float = 1.0) -> None:
    """Alpha-composite RGBA ``src`` (uint8) centred at pixel (cx, cy) onto float ``dst`` [H, W, 3]."""
    h, w = src.shape[:2]
    x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
    H, W = dst.shape[:2]
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if xa >= xb or ya >= yb:
        return
    patch = src[ya - y0: yb - y0, xa - x0: xb - x0].astype(np.float32) / 255.0  # [h', w', 4]
    a = patch[..., 3:4]
    dst[ya:yb, xa:xb] = dst[ya:yb, xa:xb] * (1 - a) + np.clip(patch[..., :3] * gain, 0, 1) * a


def _sprite_image(sp: Sprite, t: float, size: int) -> tuple[np.ndarray, float, float, float]:
    loud, pulse, pitch = sp.motion.at(t)
    r = sp.react
    scale = sp.scale * (0.82 + 0.3 * r * loud + 0.08 * r * pulse)
    px = max(4, int(round(scale * size)))
    im = Image.fromarray(sp.icon)
    if sp.flip:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    im = im.resize((px, px), Image.BILINEAR)
    angle = sp.angle + 8.0 * r * pulse * (1 if sp.flip else -1)
    im = im.rotate(angle, resample=Image.BICUBIC, expand=True)
    x = sp.x * size
    y = (sp.y + 0.22 * r * (0.5 - pitch) - 0.06 * r * pulse) * size
    return np.asarray(im), x, y, 1.0 + 0.35 * r * pulse


def draw(scene: Scene, t: float, size: int, frame_index: int = 0) -> np.ndarray:
    """The frame of ``scene`` at time ``t`` (s): RGB uint8 [size, size, 3]; ``frame_index`` seeds noise."""
    rng = np.random.default_rng([scene.seed, frame_index])
    margin = max(2, int(round(scene.shake * size)) + 1)
    if (size, margin) not in scene.cache:
        scene.cache[(size, margin)] = _background(scene.background, size, margin)
    bg = scene.cache[(size, margin)]
    dx, dy = (rng.integers(-margin + 1, margin) for _ in range(2))
    img = bg[margin + dy: margin + dy + size, margin + dx: margin + dx + size].copy()  # [size, size, 3]
    for sp in ((scene.sounder, scene.distractor) if scene.info["distractor_front"] else
               (scene.distractor, scene.sounder)):
        if sp is None:
            continue
        icon, x, y, gain = _sprite_image(sp, t, size)
        _paste(img, icon, x, y, gain)
    oc = scene.occluder
    if oc is not None:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        ex, ey = np.abs(xx - oc["x"]) / (oc["w"] / 2), np.abs(yy - oc["y"]) / (oc["h"] / 2)
        if oc["shape"] == "rect":
            m = (ex < 1) & (ey < 1)
        elif oc["shape"] == "ellipse":
            m = ex ** 2 + ey ** 2 < 1
        elif oc["shape"] == "stand":  # a music stand: a board on a pole
            m = ((ex < 1) & (ey < 1)) | ((np.abs(xx - oc["x"]) < 0.015) & (yy > oc["y"]))
        else:  # a vertical bar
            m = (np.abs(xx - oc["x"]) < oc["w"] / 5)
        a = (m * oc["alpha"]).astype(np.float32)[..., None]
        img = img * (1 - a) + oc["colour"] * a
    light = 1.0 + scene.flicker * np.sin(7.3 * t + scene.seed % 7)
    img = np.clip(img * light, 0, 1) * 255.0
    img = img + rng.normal(0, scene.noise, img.shape)
    out = Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8))
    if scene.grey:
        out = out.convert("L").convert("RGB")
    if scene.blur > 0:
        from PIL import ImageFilter

        out = out.filter(ImageFilter.GaussianBlur(scene.blur * size / 128))
    return np.asarray(out)
