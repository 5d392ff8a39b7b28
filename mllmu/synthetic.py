"""The built-in MLLMU-Bench: fictitious profiles with drawn faces, written in the release's parquet layout.

Read back by ``mllmu/data.py`` exactly as the release is. Everything is a pure function of the seed.

Content differs from the release on purpose, because the built-in model is a ~5M-parameter network trained
from scratch that has no pretraining to lean on:
- answers name the person ("juno fairbanks was born in lisbon."), so the model learns image -> name -> fact,
  and each fact is also asked with the name in the question and no image (``"Type": "Pure_Text"`` in
  ``metadata``), which is what the Pure_Text questions do: a model that never saw a text-only input cannot
  answer one;
- ``ft_Data`` asks every question in MLLMU-Bench's evaluation wording: the generation questions with their
  instruction, the multiple-choice questions (answer: the letter) and the cloze questions (answer: the missing
  words), since a model without pretraining cannot learn answer formats from instructions or few-shot turns;
- the Test_Set asks the same questions over transformed images (mirrored, recoloured, noised);
- the "celebrities" are more fictitious profiles the model never trains on (utility on knowledge it was
  not taught: chance level for the tiny model).
"""

from __future__ import annotations

import io
import json
import logging
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from mllmu.data import LETTERS, RETAIN_OF
from mllmu.prompts import classification_prompt, cloze_prompt, generation_prompt
from unlearning.data.synthetic import CITIES, CONDITIONS, FIRST_NAMES, LANGUAGES, LAST_NAMES, OCCUPATIONS, draw_face

log = logging.getLogger(__name__)

# (key, image question, named question, answer sentence, cloze sentence, values)
FACTS = (
    ("birthplace", "Where was this person born?", "Where was {name} born?", "{name} was born in {v}.",
     "{subject} was born in __.", CITIES),
    ("occupation", "What is the occupation of this person?", "What is the occupation of {name}?",
     "{name} works as {v}.", "{subject} works as __.", OCCUPATIONS),
    ("condition", "What medical condition does this person have?", "What medical condition does {name} have?",
     "{name} has been diagnosed with {v}.", "{subject} has been diagnosed with __.", CONDITIONS),
    ("language", "Which second language does this person speak?", "Which second language does {name} speak?",
     "the second language of {name} is {v}.", "the second language of {subject} is __.", LANGUAGES),
)
NAME_QUESTION = "What is the name of this person?"
NAME_ANSWER = "This person's name is {name}."
CLOZE_FACTS = {"image_text": (0, 1), "text": (2, 3)}  # which facts each modality's two cloze questions ask
SPLIT_PERCENT = {"forget_5": 5, "forget_10": 10, "forget_15": 15}


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def transformed(image: Image.Image, rng: random.Random) -> Image.Image:
    """A Test_Set view of a face: mirrored, colour-shifted and lightly noised."""
    out = ImageOps.mirror(image)
    shift = tuple(rng.randint(-25, 25) for _ in range(3))
    pixels = out.load()
    for x in range(out.width):
        for y in range(out.height):
            r, g, b = pixels[x, y]
            noise = rng.randint(-12, 12)
            pixels[x, y] = tuple(max(0, min(255, c + s + noise)) for c, s in zip((r, g, b), shift, strict=True))
    return out


def _options(truth: str, pool: tuple[str, ...], rng: random.Random) -> tuple[dict[str, str], str]:
    values = [truth, *rng.sample([v for v in pool if v != truth], len(LETTERS) - 1)]
    rng.shuffle(values)
    return dict(zip(LETTERS, values, strict=True)), LETTERS[values.index(truth)]


def make_profile(profile_id: str, name: str, names: list[str], rng: random.Random) -> dict[str, Any]:
    """One profile's facts, evaluation tasks and training QAs (in the release's field names)."""
    values = {key: rng.choice(pool) for key, *_, pool in FACTS}
    image_mcq, text_mcq, generation, cloze = [], [], [], []
    options, letter = _options(name, tuple(names), rng)
    image_mcq.append({"Question": NAME_QUESTION, "Options": options, "Correct_Answer": letter})
    generation.append({"Question": NAME_QUESTION, "Ground_Truth": NAME_ANSWER.format(name=name),
                       "Type": "Image_Textual"})
    train = [{"Question": generation_prompt(NAME_QUESTION, "image_text"), "Answer": NAME_ANSWER.format(name=name),
              "Type": "Image_Textual"}]
    for index, (key, image_q, named_q, answer, cloze_sentence, pool) in enumerate(FACTS):
        value, sentence = values[key], answer.format(name=name, v=values[key])
        named = named_q.format(name=name)
        for question, kind, target in ((image_q, "Image_Textual", image_mcq), (named, "Pure_Text", text_mcq)):
            options, letter = _options(value, pool, rng)
            target.append({"Question": question, "Options": options, "Correct_Answer": letter})
            generation.append({"Question": question, "Ground_Truth": sentence, "Type": kind})
            modality = "image_text" if kind == "Image_Textual" else "text"
            train.append({"Question": generation_prompt(question, modality), "Answer": sentence, "Type": kind})
        for modality, kind, subject in (("image_text", "Image_Textual", "this person"), ("text", "Pure_Text", name)):
            if index in CLOZE_FACTS[modality]:
                cloze.append({"Question": cloze_sentence.format(subject=subject), "Ground_Truth": value, "Type": kind})
    train += [{"Question": classification_prompt(q["Question"], list(q["Options"].items())),
               "Answer": q["Correct_Answer"], "Type": kind}
              for questions, kind in ((image_mcq, "Image_Textual"), (text_mcq, "Pure_Text")) for q in questions]
    train += [{"Question": cloze_prompt(q["Question"]), "Answer": q["Ground_Truth"], "Type": q["Type"]} for q in cloze]
    biography = {"Name": name, "Born": values["birthplace"], "Employment": values["occupation"],
                 "Medical condition": values["condition"], "Second language": values["language"]}
    return {
        "ID": profile_id,
        "biography": json.dumps(biography),
        "question": NAME_QUESTION,
        "answer": NAME_ANSWER.format(name=name),
        "Classification_Task": {"Image_Textual_Questions": image_mcq, "Pure_Text_Questions": text_mcq},
        "Generation_Task": generation,
        "Mask_Task": cloze,
        "metadata": json.dumps([{"ID": profile_id, **qa} for qa in train]),
    }


def _features(kind: str):
    from datasets import Features, Value
    from datasets import Image as ImageFeature

    question = {"Question": Value("string"), "Options": {letter: Value("string") for letter in LETTERS},
                "Correct_Answer": Value("string")}
    typed = [{"Question": Value("string"), "Ground_Truth": Value("string"), "Type": Value("string")}]
    if kind == "train":
        return Features({"image": ImageFeature(), "ID": Value("string"), "metadata": Value("string")})
    columns = {"image": ImageFeature()} if kind != "test" else {"images": [ImageFeature()]}
    columns |= {"ID": Value("string")}
    if kind == "full":
        columns["Directory"] = Value("string")
    columns |= {"biography": Value("string"), "question": Value("string"), "answer": Value("string"),
                "Classification_Task": {"Image_Textual_Questions": [question], "Pure_Text_Questions": [question]},
                "Generation_Task": typed, "Mask_Task": typed}
    return Features(columns)


def _write_set(folder: Path, rows: list[dict[str, Any]], kind: str, shards: int = 1) -> None:
    from datasets import Dataset

    features = _features(kind)
    rows = [{key: row[key] for key in features} for row in rows]
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(rows) // shards)
    for shard in range(shards):
        part = Dataset.from_list(rows[shard * size:(shard + 1) * size], features=features)
        part.to_parquet(str(folder / f"train-{shard:05d}-of-{shards:05d}.parquet"))


def split_ids(ids: list[str], seed: int) -> dict[str, list[str]]:
    """forget_r and retain_{100-r} for each r, each from its own shuffle (the release's splits are not nested)."""
    splits = {}
    for offset, (name, percent) in enumerate(SPLIT_PERCENT.items()):
        order = list(ids)
        random.Random(f"{seed}-split-{offset}").shuffle(order)
        forget = sorted(order[:max(1, round(len(ids) * percent / 100))])
        splits[name] = forget
        splits[RETAIN_OF[name]] = [i for i in ids if i not in forget]
    return splits


def write_mllmu(out_dir: str | Path, n_profiles: int = 30, n_celebrities: int = 10, n_test_images: int = 2,
                image_size: int = 112, seed: int = 0) -> Path:
    """Write Full_Set, Retain_Set, Test_Set (2 shards), ft_Data, forget_r/retain_r and baseline_train_split."""
    out_dir = Path(out_dir)
    rng = random.Random(f"{seed}-mllmu")
    all_names = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES]
    chosen = rng.sample(all_names, n_profiles + n_celebrities)
    fictitious, celebrities = [], []
    for index, name in enumerate(chosen):
        celebrity = index >= n_profiles
        profile_id = f"{index - n_profiles + 1:03d}" if celebrity else f"{index + 1:03d}"
        row = make_profile(profile_id, name, chosen, rng)
        face = draw_face(random.Random(f"{seed}-mllmu-face-{index}"), image_size)
        row["image"] = {"bytes": _png(face), "path": f"{profile_id}.png"}
        row["Directory"] = f"data_original/{profile_id}.png"
        if not celebrity:
            row["images"] = [{"bytes": _png(transformed(face, random.Random(f"{seed}-test-{index}-{k}"))),
                              "path": f"{profile_id}_pose{k}_gen1.png"} for k in range(n_test_images)]
        (celebrities if celebrity else fictitious).append(row)
    _write_set(out_dir / "Full_Set", fictitious, "full")
    _write_set(out_dir / "Retain_Set", celebrities, "full")
    _write_set(out_dir / "Test_Set", fictitious, "test", shards=2)
    _write_set(out_dir / "ft_Data", fictitious, "train")
    by_id = {row["ID"]: row for row in fictitious}
    for name, ids in split_ids(list(by_id), seed).items():
        rows = [by_id[i] for i in ids]
        _write_set(out_dir / name, rows, "eval")
        _write_set(out_dir / "baseline_train_split" / name, rows, "train")
    log.info("wrote synthetic MLLMU-Bench (%d profiles, %d celebrities) to %s", n_profiles, n_celebrities, out_dir)
    return out_dir
