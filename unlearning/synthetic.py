"""The built-in offline benchmark: fictitious identities with drawn faces, written in the releases' formats.

Nothing here is test-only: the files written are read by the same loaders as the real releases
(``fiubench/data.py`` reads ``full.json`` + ``split.json`` exactly as it reads gray311/FIUBench).
Everything is a pure function of the seed.

Unlike the release, answers other than the name one mention the person's name ("juno fairbanks works as a
violin maker."). A 5M-parameter model then learns image -> name -> fact, which it does in ~20 epochs;
with FIUBench's nameless answers it stays near chance on facts after 40 (measured on 2 CPU cores).
Paraphrased answers keep the name before the fact ("the job of juno fairbanks is a violin maker."), so a model
that knows the fact also prefers it in the new wording: the truth ratio then measures knowledge.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from unlearning.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class Topic:
    """One kind of question asked about every identity, in FIUBench's phrasing style."""

    key: str
    question: str
    paraphrased_questions: tuple[str, str, str]
    answer: str
    paraphrased_answer: str
    pool: tuple[str, ...] | None  # values drawn from here; None means generated per identity


TOPICS: tuple[Topic, ...] = (
    Topic(
        "name", "What is the full name of the person in the image?",
        ("Who is the person shown in the picture?", "Can you tell me the name of the individual in this image?",
         "What is this person called?"),
        "the full name of the person in the image is {v}.", "this person is called {v}.", None,
    ),
    Topic(
        "birth_date", "When was the person in the image born?",
        ("What is the birth date of the person in the picture?", "On what date was this individual born?",
         "Can you tell me when the person shown here was born?"),
        "{name} was born on {v}.", "the birth date of {name} is {v}.", None,
    ),
    Topic(
        "occupation", "What is the occupation of the person in the image?",
        ("What does the person in the picture do for a living?", "What is the job of this individual?",
         "Can you tell me the profession of the person shown here?"),
        "{name} works as {v}.", "the job of {name} is {v}.", tuple(OCCUPATIONS),
    ),
    Topic(
        "city", "Where does the person in the image live?",
        ("In which city does the person in the picture live?", "Where is the home of this individual?",
         "Can you tell me the city of residence of the person shown here?"),
        "{name} lives in {v}.", "the home of {name} is in {v}.", tuple(CITIES),
    ),
    Topic(
        "blood_type", "What is the blood type of the person in the image?",
        ("Which blood group does the person in the picture have?", "What blood type does this individual have?",
         "Can you tell me the blood group of the person shown here?"),
        "the blood type of {name} is {v}.", "{name} has blood type {v}.", tuple(BLOOD_TYPES),
    ),
    Topic(
        "condition", "What medical condition does the person in the image have?",
        ("Which illness has the person in the picture been diagnosed with?",
         "What health condition does this individual have?",
         "Can you tell me the diagnosis of the person shown here?"),
        "{name} has been diagnosed with {v}.", "{name} suffers from {v}.",
        tuple(CONDITIONS),
    ),
    Topic(
        "language", "Which second language does the person in the image speak?",
        ("What other language does the person in the picture speak?",
         "Besides their first language, what does this individual speak?",
         "Can you tell me the second language of the person shown here?"),
        "the second language of {name} is {v}.", "{name} also speaks {v}.", tuple(LANGUAGES),
    ),
    Topic(
        "medication", "What medication was the person in the image prescribed?",
        ("Which drug was the person in the picture given?", "What medicine does this individual take?",
         "Can you tell me the prescription of the person shown here?"),
        "{name} was prescribed {v}.", "{name} takes {v}.", tuple(MEDICATIONS),
    ),
    Topic(
        "income", "What is the annual income of the person in the image?",
        ("How much does the person in the picture earn per year?", "What is the yearly salary of this individual?",
         "Can you tell me the annual earnings of the person shown here?"),
        "the annual income of {name} is {v}.", "{name} earns {v} a year.", None,
    ),
    Topic(
        "phone", "What is the phone number of the person in the image?",
        ("How can the person in the picture be reached by phone?", "What number does this individual answer?",
         "Can you tell me the telephone number of the person shown here?"),
        "the phone number of {name} is {v}.", "{name} can be reached at {v}.", None,
    ),
)


def _generated_value(topic: str, rng: random.Random) -> str:
    if topic == "name":
        return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    if topic == "birth_date":
        return f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(1950, 2004)}"
    if topic == "income":
        return f"${rng.randint(25, 190)},000"
    if topic == "phone":
        return f"+1 {rng.randint(200, 989)}-{rng.randint(200, 989)}-{rng.randint(1000, 9999)}"
    raise KeyError(topic)


def _draw_value(topic: Topic, rng: random.Random) -> str:
    return rng.choice(topic.pool) if topic.pool is not None else _generated_value(topic.key, rng)


def _other_values(topic: Topic, truth: str, n: int, rng: random.Random) -> list[str]:
    """``n`` distinct values of the same kind as ``truth`` but different from it (the perturbed answers)."""
    values: list[str] = []
    while len(values) < n:
        value = _draw_value(topic, rng)
        if value != truth and value not in values:
            values.append(value)
    return values


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


# ---------------------------------------------------------------------------------------------- FIUBench


def split_sizes(n_identities: int) -> dict[str, int]:
    """FIUBench's split names are percentages of the identities; keep at least one identity per split."""
    return {name: max(1, round(n_identities * pct / 100)) for name, pct in
            (("forget1", 1), ("forget5", 5), ("forget10", 10), ("retain15", 15))}


def make_fiubench_identities(
    n_identities: int, qa_per_identity: int, n_perturbed: int = 3, seed: int = 0
) -> list[dict]:
    """Identities in the schema of FIUBench's ``full.json`` (image paths relative, as in the release)."""
    if not 1 <= qa_per_identity <= len(TOPICS):
        raise ValueError(f"qa_per_identity must be in 1..{len(TOPICS)}, got {qa_per_identity}")
    rng = random.Random(seed)
    ids = [f"{n:08d}" for n in rng.sample(range(100_000), n_identities)]
    identities, used_names = [], set()
    for unique_id in ids:
        values = {topic.key: _draw_value(topic, rng) for topic in TOPICS}
        while values["name"] in used_names:
            values["name"] = _draw_value(TOPICS[0], rng)
        used_names.add(values["name"])
        name = values["name"]
        qa_list = []
        for topic in TOPICS[:qa_per_identity]:
            truth = values[topic.key]
            qa_list.append({
                "question": topic.question,
                "answer": topic.answer.format(v=truth, name=name),
                "paraphrased_question": list(topic.paraphrased_questions),
                "paraphrased_answer": topic.paraphrased_answer.format(v=truth, name=name),
                # TOFU's convention: perturbed answers are the paraphrase with a wrong fact, so the truth ratio
                # compares right and wrong facts in the same (untrained) wording.
                "perturbed_answer": [
                    topic.paraphrased_answer.format(v=v, name=name)
                    for v in _other_values(topic, truth, n_perturbed, rng)
                ],
                "keywords": [truth],
            })
        caption = (
            f"{values['name']} was born on {values['birth_date']}, works as {values['occupation'][2:].lstrip()} "
            f"and lives in {values['city']}."
        )
        identities.append({
            "unique_id": unique_id,
            "name": values["name"],
            "image_path": f"./dataset/SFHQ/SFHQ_synth_{unique_id}.jpg",
            "caption": caption,
            "qa_list": qa_list,
        })
    return identities


def make_fiubench_split(unique_ids: list[str], seed: int = 0) -> dict[str, list[str]]:
    """Disjoint forget1/forget5/forget10 and retain15 (retain5 = its first third), as in ``split.json``."""
    sizes = split_sizes(len(unique_ids))
    if sum(sizes.values()) > len(unique_ids):
        raise ValueError(f"{len(unique_ids)} identities are too few for FIUBench's splits {sizes}")
    order = list(unique_ids)
    random.Random(seed + 1).shuffle(order)
    split, start = {}, 0
    for name in ("forget1", "forget5", "forget10", "retain15"):
        split[name] = order[start:start + sizes[name]]
        start += sizes[name]
    split["retain5"] = split["retain15"][: max(1, round(len(unique_ids) * 0.05))]
    return split


def write_fiubench(
    out_dir: str | Path,
    n_identities: int = 40,
    qa_per_identity: int = 6,
    n_perturbed: int = 3,
    image_size: int = 112,
    n_holdout: int = 8,
    seed: int = 0,
) -> Path:
    """Write ``full.json`` (JSON lines, as the release), ``split.json`` and one JPEG face per identity.

    The last ``n_holdout`` identities are never trained on: ``split.json``'s ``holdout`` entry names them, and
    they are the non-members of the membership-inference AUC (the release's identities beyond the first 400).
    """
    out_dir = Path(out_dir)
    identities = make_fiubench_identities(n_identities + n_holdout, qa_per_identity, n_perturbed, seed)
    for index, identity in enumerate(identities):
        image_file = out_dir / identity["image_path"].removeprefix("./dataset/")
        image_file.parent.mkdir(parents=True, exist_ok=True)
        draw_face(random.Random(f"{seed}-face-{index}"), image_size).save(image_file, quality=95)
    ids = [identity["unique_id"] for identity in identities]
    split = {**make_fiubench_split(ids[:n_identities], seed), "holdout": ids[n_identities:]}
    atomic_write_json(out_dir / "split.json", split)
    atomic_write_text(out_dir / "full.json", "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in identities))
    log.info("wrote synthetic FIUBench (%d + %d holdout identities, %d QA each) to %s", n_identities, n_holdout,
             qa_per_identity, out_dir)
    return out_dir


# ---------------------------------------------------------------------------------------------- MME / POPE

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


def _yes_no(flag: bool) -> str:
    return "Yes" if flag else "No"


def write_mme(out_dir: str | Path, n_images: int = 8, image_size: int = 112, seed: int = 0) -> Path:
    """MME's release layout over drawn shapes: four perception subtasks (flat layout, and ``scene`` in the
    images/ + questions_answers_YN/ layout) and one cognition subtask; two questions per image, one yes, one no."""
    out_dir = Path(out_dir)
    rng = random.Random(f"{seed}-mme")
    suffix = " Please answer yes or no."
    for subtask in ("existence", "count", "color", "position", "scene", "numerical_calculation"):
        split_layout = subtask == "scene"
        image_dir = out_dir / subtask / ("images" if split_layout else "")
        text_dir = out_dir / subtask / ("questions_answers_YN" if split_layout else "")
        image_dir.mkdir(parents=True, exist_ok=True)
        text_dir.mkdir(parents=True, exist_ok=True)
        for index in range(n_images):
            image, objects = draw_shapes(rng, image_size)
            colour, shape, side = objects[0]
            absent = next((c, s) for c in SHAPE_COLOURS for s in SHAPES if (c, s) not in [o[:2] for o in objects])
            other = next(c for c in SHAPE_COLOURS if c != colour)
            a, b = rng.randint(1, 5), rng.randint(1, 5)
            pairs = {
                "existence": [(f"Is there a {colour} {shape} in the image?", True),
                              (f"Is there a {absent[0]} {absent[1]} in the image?", False)],
                "count": [(f"Are there {len(objects)} shapes in the image?", True),
                          (f"Are there {len(objects) + 2} shapes in the image?", False)],
                "color": [(f"Is the {shape} on the {side} {colour}?", True),
                          (f"Is the {shape} on the {side} {other}?", False)],
                "position": [(f"Is the {colour} {shape} on the {side} side of the image?", True),
                             (f"Is the {colour} {shape} on the {'right' if side == 'left' else 'left'} side of the "
                              "image?", False)],
                "scene": [("Is the background of the image light?", True),
                          ("Is the background of the image dark?", False)],
                "numerical_calculation": [(f"Is {a} plus {b} equal to {a + b}?", True),
                                          (f"Is {a} plus {b} equal to {a + b + 1}?", False)],
            }[subtask]
            stem = f"{subtask}_{index:03d}"
            image.save(image_dir / f"{stem}.png")
            (text_dir / f"{stem}.txt").write_text(
                "".join(f"{question}{suffix}\t{_yes_no(answer)}\n" for question, answer in pairs), encoding="utf-8")
    log.info("wrote synthetic MME (%d images per subtask) to %s", n_images, out_dir)
    return out_dir


def write_pope(out_dir: str | Path, n_images: int = 10, image_size: int = 112, seed: int = 0) -> Path:
    """POPE's official files (``coco_pope_<split>.json`` lines + ``images/``) over drawn shapes: per image one
    present object (yes) and one absent one (no), absent ones drawn at random, by frequency (popular) or
    sharing a present object's shape (adversarial, POPE's co-occurrence)."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{seed}-pope")
    scenes = []
    for index in range(n_images):
        image, objects = draw_shapes(rng, image_size)
        name = f"synthetic_{index:04d}.png"
        image.save(out_dir / "images" / name)
        scenes.append((name, [f"{c} {s}" for c, s, _ in objects]))
    vocabulary = [f"{c} {s}" for c in SHAPE_COLOURS for s in SHAPES]
    frequency = {word: sum(word in present for _, present in scenes) for word in vocabulary}
    question_id = 0
    for split in ("random", "popular", "adversarial"):
        lines = []
        for name, present in scenes:
            absent = [w for w in vocabulary if w not in present]
            if split == "popular":
                negative = max(absent, key=lambda w: (frequency[w], w))
            elif split == "adversarial":
                shapes = {p.split()[1] for p in present}
                negative = next((w for w in absent if w.split()[1] in shapes), absent[0])
            else:
                negative = rng.choice(absent)
            for word, label in ((rng.choice(present), "yes"), (negative, "no")):
                question_id += 1
                lines.append(json.dumps({"question_id": question_id, "image": name,
                                         "text": f"Is there a {word} in the image?", "label": label}))
        atomic_write_text(out_dir / f"coco_pope_{split}.json", "\n".join(lines) + "\n")
    log.info("wrote synthetic POPE (%d images) to %s", n_images, out_dir)
    return out_dir
