"""The built-in FIUBench: fictitious identities with drawn faces, written in the release's format.

Nothing here is test-only: the files written are read by the same loader as the real release
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

from unlearning.data.synthetic import (
    BLOOD_TYPES,
    CITIES,
    CONDITIONS,
    FIRST_NAMES,
    LANGUAGES,
    LAST_NAMES,
    MEDICATIONS,
    MONTHS,
    OCCUPATIONS,
    draw_face,
)
from unlearning.runs.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


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
