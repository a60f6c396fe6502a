"""Render the instrument pictures of ``data/classes.csv`` from thirteen icon sets into small RGBA PNGs.

Development-time only (npm and resvg-py are *not* run-time dependencies). Regenerate with::

    mkdir -p .dev/npm && (cd .dev/npm && npm install @iconify-json/noto @iconify-json/twemoji \\
        @iconify-json/openmoji @iconify-json/game-icons @iconify-json/fluent-emoji \\
        @iconify-json/fluent-emoji-flat @iconify-json/fluent-emoji-high-contrast @iconify-json/emojione \\
        @iconify-json/emojione-v1 @iconify-json/fxemoji @iconify-json/noto-v1 \\
        @iconify-json/streamline-emojis @iconify-json/mdi)
    pip install --target .dev/pkgs resvg-py
    PYTHONPATH=.dev/pkgs python data/build_icons.py --npm .dev/npm/node_modules

Writes ``data/icons/<style>/<class mid>.png`` (128 x 128 RGBA: the icon trimmed to its opaque box, scaled to
fit and centred, alpha kept) and ``data/icons/styles.json`` (style -> package, version, licence, author,
whether the style is monochrome, icon names used). ``game-icons`` are single-colour silhouettes: rendered
black and tinted by the scene compositor at generation time. A name ``other-set:name`` borrows an icon from
another set; in a monochrome style it is reduced to its silhouette (game-icons has no hand drum, so its conga
is Noto's long drum).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SIZE = 128  # stored icon size (pixels)
MARGIN = 4  # transparent border kept around the trimmed icon

# style -> iconify package and, per class mid, the icon name(s) in that set (several names = picture variants).
# A style may draw only some of the classes (most emoji sets have no harp or trombone): each class is drawn by
# the union of the styles of a split (see avlib.data.scene.picture_pool).
_EMOJI = {"piano": ["musical-keyboard"], "guitar": ["guitar"], "violin": ["violin"], "harp": ["harp"],
          "trumpet": ["trumpet"], "trombone": ["trombone"], "saxophone": ["saxophone"], "flute": ["flute"],
          "accordion": ["accordion"], "banjo": ["banjo"], "drum_kit": ["drum"], "conga": ["long-drum"],
          "maracas": ["maracas"]}
_OLD_EMOJI = ("piano", "guitar", "violin", "trumpet", "saxophone")  # the emoji of Unicode 6-9


def _emoji(*mids: str, **renames: list[str]) -> dict[str, list[str]]:
    return {m: renames.get(m, _EMOJI[m]) for m in (mids or _EMOJI)}


STYLES: dict[str, dict] = {
    "noto": {"package": "@iconify-json/noto", "monochrome": False, "icons": _emoji()},
    "twemoji": {"package": "@iconify-json/twemoji", "monochrome": False, "icons": _emoji()},
    "game-icons": {"package": "@iconify-json/game-icons", "monochrome": True, "icons": {
        "piano": ["grand-piano", "piano-keys"], "guitar": ["guitar"], "violin": ["violin"],
        "harp": ["harp"], "trumpet": ["trumpet"], "trombone": ["trombone"], "saxophone": ["saxophone"],
        "flute": ["flute"], "accordion": ["accordion"], "banjo": ["banjo"], "drum_kit": ["drum-kit", "drum"],
        "conga": ["noto:long-drum"], "maracas": ["maracas"]}},  # game-icons has no hand drum
    "openmoji": {"package": "@iconify-json/openmoji", "monochrome": False, "icons": _emoji()},
    "fluent-3d": {"package": "@iconify-json/fluent-emoji", "monochrome": False, "icons": _emoji(
        *[m for m in _EMOJI if m not in ("harp", "trombone")])},
    "fluent-flat": {"package": "@iconify-json/fluent-emoji-flat", "monochrome": False, "icons": _emoji(
        *[m for m in _EMOJI if m not in ("harp", "trombone")])},
    "fluent-contrast": {"package": "@iconify-json/fluent-emoji-high-contrast", "monochrome": True,
                        "icons": _emoji(*[m for m in _EMOJI if m not in ("harp", "trombone")])},
    "emojione": {"package": "@iconify-json/emojione", "monochrome": False,
                 "icons": _emoji(*_OLD_EMOJI, "drum_kit")},
    "emojione-v1": {"package": "@iconify-json/emojione-v1", "monochrome": False, "icons": _emoji(*_OLD_EMOJI)},
    "fxemoji": {"package": "@iconify-json/fxemoji", "monochrome": False,
                "icons": _emoji(*_OLD_EMOJI, piano=["musicalkeyboard"])},
    "noto-v1": {"package": "@iconify-json/noto-v1", "monochrome": False,
                "icons": _emoji(*_OLD_EMOJI, "drum_kit")},
    "streamline": {"package": "@iconify-json/streamline-emojis", "monochrome": False,
                   "icons": _emoji(*_OLD_EMOJI)},
    "mdi": {"package": "@iconify-json/mdi", "monochrome": True, "icons": {
        "piano": ["piano"], "guitar": ["guitar-acoustic", "guitar-electric"], "violin": ["violin"],
        "trumpet": ["trumpet"], "saxophone": ["saxophone"]}},
}


def class_mids() -> list[str]:
    with open(HERE / "classes.csv", newline="") as f:
        return [row["mid"] for row in csv.DictReader(f)]


def icon_svg(icon_set: dict, name: str) -> str:
    """The standalone SVG of icon ``name`` of an iconify JSON set (aliases resolved)."""
    icons, aliases = icon_set["icons"], icon_set.get("aliases", {})
    while name not in icons:
        if name not in aliases:
            raise KeyError(f"{icon_set['prefix']}: no icon {name!r}")
        name = aliases[name]["parent"]
    icon = icons[name]
    w = icon.get("width", icon_set.get("width", 16))
    h = icon.get("height", icon_set.get("height", 16))
    left, top = icon.get("left", icon_set.get("left", 0)), icon.get("top", icon_set.get("top", 0))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            f'viewBox="{left} {top} {w} {h}" color="#000000">{icon["body"]}</svg>')


def render(svg: str, resvg_py) -> Image.Image:
    """Render at 4x, trim to the opaque box, fit into SIZE x SIZE with a margin, keep alpha."""
    png = resvg_py.svg_to_bytes(svg_string=svg, width=SIZE * 4, height=SIZE * 4)
    im = Image.open(io.BytesIO(bytes(png))).convert("RGBA")
    alpha = np.asarray(im)[..., 3]
    ys, xs = np.nonzero(alpha > 8)
    im = im.crop((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    inner = SIZE - 2 * MARGIN
    scale = inner / max(im.size)
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
    out = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    out.alpha_composite(im, ((SIZE - im.width) // 2, (SIZE - im.height) // 2))
    return out


def main() -> None:
    import resvg_py

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npm", type=Path, default=Path(".dev/npm/node_modules"), help="node_modules folder")
    args = ap.parse_args()
    mids = class_mids()
    manifest = {}
    for style, spec in STYLES.items():
        pkg_dir = args.npm / spec["package"]
        icon_set = json.loads((pkg_dir / "icons.json").read_text())
        info = json.loads((pkg_dir / "info.json").read_text())
        version = json.loads((pkg_dir / "package.json").read_text())["version"]
        out_dir = HERE / "icons" / style
        out_dir.mkdir(parents=True, exist_ok=True)
        for old in out_dir.glob("*.png"):
            old.unlink()
        unknown = [m for m in spec["icons"] if m not in mids]
        if unknown:
            raise SystemExit(f"style {style} names classes {unknown} that data/classes.csv does not have")
        for mid in [m for m in mids if m in spec["icons"]]:
            for k, name in enumerate(spec["icons"][mid]):
                fname = f"{mid}.png" if k == 0 else f"{mid}-{k + 1}.png"
                source = icon_set
                if ":" in name:  # borrowed from another set
                    prefix, name = name.split(":")
                    source = json.loads((args.npm / "@iconify-json" / prefix / "icons.json").read_text())
                im = render(icon_svg(source, name), resvg_py)
                if spec["monochrome"]:  # silhouette: black, alpha kept
                    a = np.asarray(im)[..., 3]
                    im = Image.fromarray(np.dstack([np.zeros_like(a)] * 3 + [a]), "RGBA")
                im.save(out_dir / fname, optimize=True)
        manifest[style] = {
            "package": spec["package"], "version": version, "name": info["name"],
            "author": info["author"]["name"], "author_url": info["author"].get("url", ""),
            "license": info["license"]["spdx"], "license_url": info["license"].get("url", ""),
            "monochrome": spec["monochrome"], "icons": {m: spec["icons"][m] for m in mids if m in spec["icons"]},
        }
        n = sum(len(v) for v in spec["icons"].values())
        print(f"{style}: {n} icons from {spec['package']} {version}")
    (HERE / "icons" / "styles.json").write_text(json.dumps(manifest, indent=1) + "\n")
    sizes = sum(p.stat().st_size for p in (HERE / "icons").rglob("*.png"))
    print(f"total {sizes / 1e3:.0f} kB of PNG")


if __name__ == "__main__":
    main()
