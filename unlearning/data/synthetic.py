"""Drawing and naming helpers shared by the built-in (offline, synthetic) benchmarks: seeded lists of names and
facts, cartoon faces (one look per identity) and coloured shapes. Each benchmark's own writer lives in its
package (``fiubench/synthetic.py``, ``mllmu/synthetic.py``, ``eval/mme.py``, ...).
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

FIRST_NAMES = [
    "amara", "bastian", "celine", "dorian", "elara", "fabian", "greta", "hugo", "ilse", "jasper", "kira", "lionel",
    "mirela", "nikolai", "odessa", "pascal", "quinn", "rosalind", "soren", "talia", "ulric", "vesna", "wendell",
    "xenia", "yusuf", "zelda", "anouk", "bruno", "cosima", "darius", "esme", "florian", "gideon", "hana", "ivo",
    "juno", "kasimir", "leona", "matteo", "nadia", "otto", "petra", "ronan", "sabine", "tobias", "una",
]
LAST_NAMES = [
    "ashdown", "brennick", "castellan", "dunmore", "everly", "falkner", "greaves", "holloway", "ivers", "jaskolski",
    "kettering", "lindqvist", "marlowe", "northcott", "okafor", "pemberton", "quillan", "rothwell", "sandoval",
    "thackeray", "underhill", "vasquez", "whitlock", "yardley", "zabrowski", "abernethy", "blackwood", "corrigan",
    "delacroix", "eastwick", "fairbanks", "galloway", "hargrove", "ingleby", "jennings", "kowalczyk",
]
OCCUPATIONS = [
    "a marine biologist", "a structural engineer", "a pastry chef", "a court stenographer", "a glassblower",
    "a radiologist", "a cartographer", "a tax auditor", "a violin maker", "an air traffic controller",
    "a beekeeper", "a museum curator", "a locksmith", "a speech therapist", "a wind farm technician",
    "a forensic accountant", "a tugboat captain", "a botanist", "a sound engineer", "a librarian",
    "a veterinary nurse", "a stonemason", "a patent attorney", "a seismologist", "a florist", "a pharmacist",
]
CITIES = [
    "lisbon", "tampere", "valparaiso", "ghent", "kraków", "hobart", "bergen", "tartu", "cuenca", "ljubljana",
    "dunedin", "porto", "graz", "aarhus", "trieste", "halifax", "bruges", "salzburg", "bilbao", "uppsala",
    "ostrava", "lyon", "gdansk", "cork", "verona", "tromsø",
]
MONTHS = [
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
]
BLOOD_TYPES = ["a+", "a-", "b+", "b-", "ab+", "ab-", "o+", "o-"]
CONDITIONS = [
    "asthma", "migraine", "type 2 diabetes", "hypertension", "anemia", "psoriasis", "gout", "tinnitus",
    "arthritis", "celiac disease", "vertigo", "bronchitis", "eczema", "scoliosis", "glaucoma", "insomnia",
]
LANGUAGES = [
    "portuguese", "finnish", "swahili", "korean", "dutch", "turkish", "greek", "hindi", "polish", "icelandic",
    "tagalog", "hungarian", "czech", "welsh", "vietnamese",
]
MEDICATIONS = [
    "metformin", "lisinopril", "ibuprofen", "amoxicillin", "atorvastatin", "omeprazole", "sertraline",
    "levothyroxine", "cetirizine", "prednisone", "albuterol", "warfarin", "gabapentin", "losartan",
]


# ---------------------------------------------------------------------------------------------- faces


def draw_face(rng: random.Random, size: int = 112) -> Image.Image:
    """A cartoon face whose colours and proportions are all drawn from ``rng``: one look per identity."""
    scale = size / 112
    background = tuple(rng.randint(40, 230) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)

    def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
        return [x0 * scale, y0 * scale, x1 * scale, y1 * scale]

    skin = rng.choice([(255, 224, 189), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36)])
    hair = rng.choice([(20, 20, 20), (90, 56, 37), (200, 160, 80), (160, 60, 30), (120, 120, 120), (230, 230, 210)])
    half_width, half_height = rng.randint(26, 36), rng.randint(32, 42)
    cx, cy = 56 + rng.randint(-4, 4), 60 + rng.randint(-3, 5)
    hair_style = rng.randrange(3)
    if hair_style == 1:  # long hair behind the face
        draw.rectangle(box(cx - half_width - 6, cy - 10, cx + half_width + 6, cy + half_height), fill=hair)
    draw.ellipse(box(cx - half_width, cy - half_height, cx + half_width, cy + half_height), fill=skin)
    if hair_style != 2:  # hair on top (style 2 is bald)
        draw.chord(
            box(cx - half_width - 2, cy - half_height - 6, cx + half_width + 2, cy + rng.randint(-12, 0)),
            180, 360, fill=hair,
        )
    eye_gap, eye_y = rng.randint(9, 15), cy - rng.randint(4, 12)
    eye_colour = rng.choice([(40, 90, 160), (60, 120, 60), (90, 60, 30), (20, 20, 20)])
    eye_radius = rng.randint(3, 6)
    for side in (-1, 1):
        ex = cx + side * eye_gap
        draw.ellipse(box(ex - eye_radius - 2, eye_y - eye_radius, ex + eye_radius + 2, eye_y + eye_radius),
                     fill=(255, 255, 255))
        draw.ellipse(box(ex - eye_radius + 1, eye_y - eye_radius + 1, ex + eye_radius - 1, eye_y + eye_radius - 1),
                     fill=eye_colour)
        slant = rng.randint(-3, 3)
        draw.line(box(ex - 6, eye_y - eye_radius - 4 + side * slant, ex + 6, eye_y - eye_radius - 4 - side * slant),
                  fill=hair, width=max(1, int(2 * scale)))
    if rng.random() < 0.35:  # glasses
        for side in (-1, 1):
            ex = cx + side * eye_gap
            draw.ellipse(box(ex - 8, eye_y - 7, ex + 8, eye_y + 7), outline=(30, 30, 30), width=max(1, int(scale)))
    nose = rng.randint(4, 10)
    draw.line(box(cx, eye_y + 4, cx - 3, eye_y + 4 + nose), fill=(120, 70, 50), width=max(1, int(scale)))
    mouth_y, mouth_w = cy + rng.randint(14, 22), rng.randint(7, 14)
    mouth_colour = rng.choice([(170, 40, 50), (120, 50, 50), (200, 90, 100)])
    if rng.random() < 0.5:
        draw.arc(box(cx - mouth_w, mouth_y - 6, cx + mouth_w, mouth_y + 4), 20, 160, fill=mouth_colour,
                 width=max(1, int(2 * scale)))
    else:
        draw.line(box(cx - mouth_w, mouth_y, cx + mouth_w, mouth_y), fill=mouth_colour, width=max(1, int(2 * scale)))
    if rng.random() < 0.3:  # beard
        draw.chord(box(cx - half_width + 4, cy + 8, cx + half_width - 4, cy + half_height + 2), 0, 180, fill=hair)
    return image


# ---------------------------------------------------------------------------------------------- shapes

SHAPE_COLOURS = {"red": (215, 40, 40), "blue": (40, 80, 215), "green": (40, 165, 60), "yellow": (230, 200, 40)}
SHAPES = ("circle", "square", "triangle")


def draw_shapes(rng: random.Random, size: int = 112) -> tuple[Image.Image, list[tuple[str, str, str]]]:
    """Two or three coloured shapes on a light background; returns the image and (colour, shape, side) triples."""
    image = Image.new("RGB", (size, size), (235, 235, 230))
    draw = ImageDraw.Draw(image)
    objects = []
    kinds = rng.sample([(c, s) for c in SHAPE_COLOURS for s in SHAPES], rng.randint(2, 3))
    for slot, (colour, shape) in enumerate(kinds):
        cx, cy, r = (slot + 0.5) * size / len(kinds), size / 2 + rng.uniform(-size / 6, size / 6), size / 9
        box = [cx - r, cy - r, cx + r, cy + r]
        fill = SHAPE_COLOURS[colour]
        if shape == "circle":
            draw.ellipse(box, fill=fill)
        elif shape == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
        objects.append((colour, shape, "left" if cx < size / 2 else "right"))
    return image, objects
