"""Drawings of synthetic scenes (`vqa synth --render`): one small PNG per image, named as the
dataset names its images (COCO_<subtype>_<12-digit id>.png; VizWiz: VizWiz_<split>_<8 digits>.jpg,
a JPEG, since its questions name the file).

Each object is drawn at the centre of its grid cell: its shape (cube: square, sphere: circle,
cylinder: upright can, cone: triangle) filled with its colour, large or small; metal objects get
a dark outline and a white highlight, rubber ones neither. Background boxes are not drawn.
The drawing is a function of the scene alone, so the same scenes give byte-identical PNGs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PIL import Image, ImageDraw

RENDER_SIZE = 224  # longer side in pixels; the shorter one keeps the scene's aspect ratio
COLORS = {
    "gray": (128, 128, 128), "red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60),
    "brown": (135, 85, 40), "purple": (140, 50, 180), "yellow": (235, 210, 40), "orange": (245, 140, 20),
}  # fmt: skip
BACKGROUND, GRID_LINE, OUTLINE, HIGHLIGHT = (245, 245, 240), (215, 215, 210), (30, 30, 30), (255, 255, 255)
HALF = {"small": 0.28, "large": 0.45}  # half the shape's extent, in cell sides


def image_size(width: int, height: int, size: int = RENDER_SIZE) -> tuple[int, int]:
    """The rendered size of a width x height scene: longer side `size`, aspect ratio kept."""
    scale = size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def cell_centre(obj: dict, w: int, h: int, grid: int) -> tuple[float, float]:
    """Pixel centre of an object's cell in a w x h rendering."""
    return (obj["col"] + 0.5) * w / grid, (obj["row"] + 0.5) * h / grid


def render_scene(scene: dict, grid: int, size: int = RENDER_SIZE) -> Image.Image:
    """A scene of scenes_<subtype>.json ({width, height, objects: [{row, col, size, ...}]}) as RGB."""
    w, h = image_size(scene["width"], scene["height"], size)
    img = Image.new("RGB", (w, h), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for k in range(1, grid):
        draw.line([(k * w / grid, 0), (k * w / grid, h)], fill=GRID_LINE)
        draw.line([(0, k * h / grid), (w, k * h / grid)], fill=GRID_LINE)
    for o in scene["objects"]:
        cx, cy = cell_centre(o, w, h, grid)
        r = HALF[o["size"]] * min(w, h) / grid
        fill = COLORS[o["color"]]
        line = OUTLINE if o["material"] == "metal" else None
        lw = 2 if line else 0
        ink = {"fill": fill, "outline": line, "width": lw}
        box = [cx - r, cy - r, cx + r, cy + r]
        if o["shape"] == "cube":
            draw.rectangle(box, **ink)
        elif o["shape"] == "sphere":
            draw.ellipse(box, **ink)
        elif o["shape"] == "cone":
            draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], **ink)
        else:  # cylinder: a can, a body between two elliptic ends
            e, x0, x1 = 0.3 * r, cx - 0.7 * r, cx + 0.7 * r
            draw.ellipse([x0, cy + r - 2 * e, x1, cy + r], **ink)
            draw.rectangle([x0, cy - r + e, x1, cy + r - e], fill=fill)
            if line:
                draw.line([(x0, cy - r + e), (x0, cy + r - e)], fill=line, width=lw)
                draw.line([(x1, cy - r + e), (x1, cy + r - e)], fill=line, width=lw)
            draw.ellipse([x0, cy - r, x1, cy - r + 2 * e], **ink)
        if line:  # a specular spot, off the centre so the centre pixel keeps the object's colour
            d, s = 0.25 * r, max(0.12 * r, 1.0)
            draw.ellipse([cx - d - s, cy - d - s, cx - d + s, cy - d + s], fill=HIGHLIGHT)
    return img


def png_name(subtype: str, image_id: int) -> str:
    return f"COCO_{subtype}_{image_id:012d}.png"


def render_split(out_dir: Path, subtype: str, scenes: list[dict], grid: int, size: int = RENDER_SIZE) -> Path:
    """Draw every scene into out_dir/images/<subtype>/, replacing that folder as a whole.

    The PNGs go into a temporary folder that is renamed at the end, so an interrupted render
    leaves the previous folder (or none), never a partial one.
    """
    final = Path(out_dir) / "images" / subtype
    tmp = final.with_name(f".{subtype}.{os.getpid()}.tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for scene in scenes:
            if "image" in scene:  # VizWiz keys questions by the photo's file name: keep it, a JPEG
                render_scene(scene, grid, size).save(tmp / scene["image"], format="JPEG", quality=95)
            else:
                render_scene(scene, grid, size).save(tmp / png_name(subtype, scene["image_id"]), format="PNG")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
