"""Write this recipe's images and labels: people pasted onto textures, with their faces' boxes (COCO-style).

Sources (all shipped inside the scikit-image wheel, `pip install scikit-image==0.26.0`):
- astronaut.png: Eileen Collins, NASA, public domain; camera.png: the cameraman, CC0 (Lav Varshney);
- backgrounds brick.png, grass.png, gravel.png (CC0 Textures, CC0), coffee.png (CC0, Rachel Michetti),
  rocket.jpg (SpaceX, public domain).

The face boxes of the two source photographs were drawn by hand (FACES); each generated image places one or two
of the photographs, scaled and possibly mirrored, on a background, and the boxes follow exactly. The images are
320 x 320 (the detector's input), so labels and network input share one pixel grid.

    python recipes/nudenet-faces/make_data.py   # rewrites images/ and labels.json, byte for byte
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SIZE = 320
# hand-drawn face boxes (x1, y1, x2, y2) in the 512 x 512 source photographs, and the detector's class of each
FACES = {"astronaut.png": ((177, 88, 272, 180), "FACE_FEMALE"), "camera.png": ((184, 124, 262, 198), "FACE_MALE")}
BACKGROUNDS = ("brick.png", "grass.png", "gravel.png", "coffee.png", "rocket.jpg")
# nudenet 3.4.2's class order (nudenet/nudenet.py, __labels): category k of labels.json is the model's class k
CLASSES = ["FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED",
           "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED", "BELLY_COVERED", "FEET_COVERED", "ARMPITS_COVERED",
           "ARMPITS_EXPOSED", "FACE_MALE", "BELLY_EXPOSED", "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED",
           "BUTTOCKS_COVERED"]
SETS = {"cal": (64, 1), "val": (40, 2)}  # images, seed


def _skimage_data() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs scikit-image's sample images: pip install scikit-image==0.26.0")
    return Path(spec.submodule_search_locations[0]) / "data"


def _background(data: Path, rng: np.random.Generator) -> Image.Image:
    image = Image.open(data / BACKGROUNDS[rng.integers(len(BACKGROUNDS))]).convert("RGB")
    side = int(min(image.size) * rng.uniform(0.5, 1.0))
    left, top = (int(rng.integers(0, n - side + 1)) for n in image.size)
    return image.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.Resampling.BILINEAR)


def _compose(data: Path, rng: np.random.Generator) -> tuple[Image.Image, list[tuple[list[float], str]]]:
    """One image: a background and one or two people on it; their faces' boxes as [x, y, width, height]."""
    canvas = _background(data, rng)
    people = [rng.choice(list(FACES)) for _ in range(1 + int(rng.uniform() < 0.35))]
    boxes = []
    for index, name in enumerate(people):
        (x1, y1, x2, y2), label = FACES[name]
        person = Image.open(data / name).convert("RGB")
        scale = rng.uniform(0.5, 1.0) / (1.6 if len(people) > 1 else 1.0)
        side = int(SIZE * scale)
        if rng.uniform() < 0.5:
            person = person.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            x1, x2 = 512 - x2, 512 - x1
        person = person.resize((side, side), Image.Resampling.BILINEAR)
        span = max(SIZE - side, 0)
        left = int(rng.integers(0, span + 1)) if len(people) == 1 else (0 if index == 0 else SIZE - side)
        top = int(rng.integers(0, span + 1))
        canvas.paste(person, (left, top))
        k = side / 512
        boxes = [b for b in boxes if not _covered(b[0], (left, top, left + side, top + side))]
        boxes.append(([left + x1 * k, top + y1 * k, (x2 - x1) * k, (y2 - y1) * k], label))
    return canvas, boxes


def _covered(box: list[float], pasted: tuple[int, int, int, int]) -> bool:
    """Whether a face box ([x, y, w, h]) lies under a photograph pasted later (hidden)."""
    x, y, w, h = box
    return pasted[0] < x + w and x < pasted[2] and pasted[1] < y + h and y < pasted[3]


def main() -> None:
    data = _skimage_data()
    document = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in enumerate(CLASSES)]}
    for folder, (count, seed) in SETS.items():
        rng = np.random.default_rng(seed)
        out = HERE / "images" / folder
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*.jpg"):
            old.unlink()
        for index in range(count):
            image, boxes = _compose(data, rng)
            name = f"{folder}_{index:03d}.jpg"
            image.save(out / name, quality=90)
            if folder != "val":
                continue
            image_id = len(document["images"]) + 1
            document["images"].append({"id": image_id, "file_name": name, "width": SIZE, "height": SIZE})
            for box, label in boxes:
                document["annotations"].append({"id": len(document["annotations"]) + 1, "image_id": image_id,
                                                "category_id": CLASSES.index(label), "bbox": [round(v, 2) for v in box],
                                                "area": round(box[2] * box[3], 2), "iscrowd": 0})
    (HERE / "labels.json").write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
