"""Reading JSON releases record by record: every error names the file, the record and the field.

Shared by the benchmarks whose releases are JSON files of records with image paths (FIUBench, SafeEraser,
EFUF): JSON or JSON-lines files, typed fields that are never coerced (``"answer": null`` or a number where
text belongs is an error, not the string "None"), image paths resolved inside the data folder and every
image decoded in full once, and the refusal list a release may ship in ``prompt.json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from unlearning.data.examples import DataError
from unlearning.data.images import UNREADABLE, open_checked, too_large

log = logging.getLogger(__name__)


def read_records(path: Path) -> list[dict[str, Any]]:
    """A JSON list (or a single object) or a JSON-lines file of objects."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8")
    try:
        records = json.loads(text)
        records = records if isinstance(records, list) else [records]
    except json.JSONDecodeError:
        records = []
        for line_number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DataError(f"{path}: line {line_number} is not valid JSON ({error.msg})") from error
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{path}: record {index} is a {type(record).__name__}, expected an object")
    return records


def shown(value: Any) -> str:
    """A value as an error message shows it: its type and the start of its text."""
    return "null" if value is None else f"{type(value).__name__} {str(value)[:40]!r}"


def require(record: Mapping[str, Any], fields: tuple[str, ...], where: str) -> None:
    for name in fields:
        if name not in record:
            raise DataError(f"{where}: missing field {name!r}")


def string_field(record: Mapping[str, Any], name: str, where: str, allow_empty: bool = False) -> str:
    """A field that must hold a non-empty string (``allow_empty``: any string, for values a release legitimately
    leaves empty, such as a model's empty answer)."""
    if name not in record:
        raise DataError(f"{where}: missing field {name!r}")
    value = record[name]
    if not isinstance(value, str) or not (allow_empty or value.strip()):
        raise DataError(f"{where}: field {name!r} must be a {'' if allow_empty else 'non-empty '}string, got "
                        f"{shown(value)}")
    return value


def string_list(value: Any, where: str, name: str, min_len: int = 1) -> tuple[str, ...]:
    """A list of strings (a single string counts as a list of one)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or len(value) < min_len or not all(isinstance(v, str) for v in value):
        raise DataError(f"{where}: field {name!r} must be a list of at least {min_len} strings, got {shown(value)}")
    return tuple(value)


def object_field(record: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    if name not in record:
        raise DataError(f"{where}: missing field {name!r}")
    value = record[name]
    if not isinstance(value, dict):
        raise DataError(f"{where}: field {name!r} must be an object, got {shown(value)}")
    return value


def object_list(value: Any, where: str, name: str, min_len: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """The objects of a list field, each with where it is (``<where> <name>[i]``), for errors naming the item."""
    if not isinstance(value, list) or len(value) < min_len:
        least = f"a list of at least {min_len} objects" if min_len else "a list"
        raise DataError(f"{where}: field {name!r} must be {least}, got {shown(value)}")
    items = []
    for index, item in enumerate(value):
        here = f"{where} {name}[{index}]"
        if not isinstance(item, dict):
            raise DataError(f"{here}: expected an object, got {shown(item)}")
        items.append((here, item))
    return items


def resolve_image(data_dir: Path, raw: str, where: str) -> Path:
    """Find ``raw`` inside ``data_dir``; releases write paths relative to their repository root, so a leading
    ``./`` and ``dataset/`` are tried stripped too. A path that leaves the folder is an error."""
    root = data_dir.resolve()
    candidates = [Path(raw)]
    stripped = raw.removeprefix("./").removeprefix("dataset/")
    if stripped != raw.removeprefix("./"):
        candidates.append(Path(stripped))
    for candidate in candidates:
        path = (root / candidate).resolve()
        if not path.is_relative_to(root):
            raise DataError(f"{where}: image path {raw!r} points outside the data folder {root}")
        if path.is_file():
            return path
    raise DataError(f"{where}: image {raw!r} not found under {root}")


def check_image(path: Path, where: str) -> None:
    """Decode the whole image once (``verify()`` lets a truncated JPEG through)."""
    try:
        with open_checked(path) as image:
            image.load()
    except Image.DecompressionBombError as error:
        raise DataError(f"{where}: image {path} is {too_large(error)}") from error
    except UNREADABLE as error:
        raise DataError(f"{where}: image {path} cannot be read ({error})") from error


def _refusals(data_dir: Path, packaged: Path) -> tuple[list[str], str]:
    path = data_dir / "prompt.json"
    source = "the release's prompt.json"
    if not path.is_file():
        path, source = packaged, "the toolkit's packaged list (no prompt.json in the data folder)"
    record = read_records(path)[0]
    refusals = record.get("idk")
    if not isinstance(refusals, list) or not refusals or not all(isinstance(r, str) and r for r in refusals):
        raise DataError(f"{path}: 'idk' must be a non-empty list of refusal strings")
    return refusals, f"{len(refusals)} refusals from {source} ({path})"


def load_refusals(data_dir: Path, packaged: Path) -> list[str]:
    """The refusal answers (PO's; IdkDPO's preferred answers): ``prompt.json``'s ``idk`` list in the data folder
    (the releases' file), else the package's own list. The log says which (a warning for the packaged list: the
    originals' had 50 refusals)."""
    refusals, source = _refusals(data_dir, packaged)
    if (data_dir / "prompt.json").is_file():
        log.info("refusals (the refusal stream): %s", source)
    else:
        log.warning("refusals (the refusal stream): %s; the original code read its own 50 from the release's "
                    "prompt.json: put that file in the data folder to train on them", source)
    return refusals


def refusal_source(data_dir: Path, packaged: Path) -> str:
    """Where PO's refusals come from, for the run's ``run.json``."""
    return _refusals(data_dir, packaged)[1]
