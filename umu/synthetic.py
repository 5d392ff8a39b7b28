"""The built-in UMU-Bench: fictitious profiles with drawn faces, written in the release's layout.

Folders ``forget_{5,10,15}``, ``retain_{95,90,85}``, ``full_data`` and ``Real_Person_Set``, each holding
``train-00000-of-00001.parquet`` with the release's columns: ``ID`` (string), ``image`` (an HF image struct),
``Biography``, and ``MM_QA``, ``UM_QA``, ``Classify``, ``Cloze``, ``Generation`` as stringified Python dicts
(``str(dict)``, read back with ``ast.literal_eval`` as the authors read them), the multimodal side spelt
``muitimodal`` as in the release. Read back by ``umu/data.py`` exactly as the release is; a pure function of the seed.

The profiles, facts and faces are MLLMU-Bench's built-in ones (``mllmu.synthetic``: UMU-Bench's 653 profiles are
MLLMU-Bench's). Content differs from the release on purpose, as MLLMU-Bench's built-in does, because the built-in
model is a ~5M-parameter network trained from scratch:
- answers name the person, and each fact is asked with the image ("this person", MM_QA) and with the name and no
  image (UM_QA), the pair UMU-Bench evaluates side by side;
- the training QAs include every evaluation question in its evaluation wording (generation with its instruction,
  classification with its option list and the option's text as the answer, cloze with the missing words), since
  a model without pretraining cannot learn answer formats from instructions;
- the "real people" are more fictitious profiles the model never trains on (chance level for the tiny model).
"""

from __future__ import annotations

import io
import logging
import random
from pathlib import Path
from typing import Any

from PIL import Image

from mllmu.data import LETTERS
from mllmu.synthetic import FACTS, NAME_ANSWER, NAME_QUESTION, split_ids
from umu.data import FULL_SPLIT, REAL_SETS
from umu.prompts import classification_prompt, cloze_prompt, generation_prompt
from unlearning.data.synthetic import FIRST_NAMES, LAST_NAMES, draw_face

log = logging.getLogger(__name__)

PARQUET = "train-00000-of-00001.parquet"
COLUMNS = ("ID", "image", "Biography", "MM_QA", "UM_QA", "Classify", "Cloze", "Generation")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _options(truth: str, pool: tuple[str, ...] | list[str], rng: random.Random) -> tuple[dict[str, str], str]:
    values = [truth, *rng.sample([v for v in pool if v != truth], len(LETTERS) - 1)]
    rng.shuffle(values)
    return dict(zip(LETTERS, values, strict=True)), LETTERS[values.index(truth)]


def make_profile(profile_id: str, name: str, rng: random.Random) -> dict[str, Any]:
    """One profile's columns (the stringified dicts as the release stores them)."""
    values = {key: rng.choice(pool) for key, *_, pool in FACTS}
    tasks: dict[str, dict[str, dict[str, Any]]] = {
        task: {"unimodal": {}, "muitimodal": {}} for task in ("Classify", "Cloze", "Generation")}
    qas: dict[str, list[tuple[str, str]]] = {"MM_QA": [], "UM_QA": []}
    name_answer = NAME_ANSWER.format(name=name)
    qas["MM_QA"].append((generation_prompt(NAME_QUESTION, "image_text"), name_answer))
    for index, (key, image_q, named_q, answer, cloze_sentence, pool) in enumerate(FACTS):
        value, sentence = values[key], answer.format(name=name, v=values[key])
        k = str(index + 1)
        for side, column, modality, question, subject in (
                ("muitimodal", "MM_QA", "image_text", image_q, "this person"),
                ("unimodal", "UM_QA", "text", named_q.format(name=name), name)):
            options, letter = _options(value, pool, rng)
            cloze = cloze_sentence.format(subject=subject)
            tasks["Classify"][side][k] = {"question": question, "options": options,
                                          "answer": f"{letter}. {value}"}
            tasks["Cloze"][side][k] = {"question": cloze, "answer": value}
            tasks["Generation"][side][k] = {"question": question, "answer": sentence}
            qas[column] += [(generation_prompt(question, modality), sentence),
                            (classification_prompt(question, list(options.values())), value),
                            (cloze_prompt(cloze), value)]
    biography = (f"{name} was born in {values['birthplace']}, works as {values['occupation']}, has been diagnosed "
                 f"with {values['condition']} and speaks {values['language']} as a second language.")
    row: dict[str, Any] = {"ID": profile_id, "Biography": biography}
    for column, pairs in qas.items():
        keys = [str(i + 1) for i in range(len(pairs))]
        row[column] = str({"question": dict(zip(keys, (q for q, _ in pairs), strict=True)),
                           "answer": dict(zip(keys, (a for _, a in pairs), strict=True))})
    row |= {task: str(value) for task, value in tasks.items()}
    return row


def _write(folder: Path, rows: list[dict[str, Any]]) -> None:
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    features = Features({"ID": Value("string"), "image": ImageFeature(),
                         **{column: Value("string") for column in COLUMNS[2:]}})
    folder.mkdir(parents=True, exist_ok=True)
    Dataset.from_list([{c: row[c] for c in COLUMNS} for row in rows], features=features).to_parquet(
        str(folder / PARQUET))


def write_umu(out_dir: str | Path, n_profiles: int = 20, n_real: int = 10, image_size: int = 112,
              seed: int = 0) -> Path:
    """Write full_data, Real_Person_Set and forget_r / retain_{100-r} for r in 5, 10, 15."""
    out_dir = Path(out_dir)
    rng = random.Random(f"{seed}-umu")
    all_names = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES]
    chosen = rng.sample(all_names, n_profiles + n_real)
    fictitious, real = [], []
    for index, name in enumerate(chosen):
        is_real = index >= n_profiles
        profile_id = f"{index - n_profiles + 1:03d}" if is_real else f"{index + 1:03d}"
        row = make_profile(profile_id, name, rng)
        face = draw_face(random.Random(f"{seed}-umu-face-{index}"), image_size)
        row["image"] = {"bytes": _png(face), "path": f"image_{profile_id}.jpg"}  # the name info_pre.py:32 uses
        (real if is_real else fictitious).append(row)
    _write(out_dir / FULL_SPLIT, fictitious)
    _write(out_dir / REAL_SETS[0], real)
    by_id = {row["ID"]: row for row in fictitious}
    for name, ids in split_ids(list(by_id), seed).items():
        _write(out_dir / name, [by_id[i] for i in ids])
    log.info("wrote synthetic UMU-Bench (%d profiles, %d real) to %s", n_profiles, n_real, out_dir)
    return out_dir
