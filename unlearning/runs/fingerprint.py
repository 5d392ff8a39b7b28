"""Content fingerprints: what a result was computed from, so a changed input never reuses an old result.

``content_hash`` hashes any structure of examples, records and settings by content: a ``Path`` stands for
the bytes of its file (so an image replaced under the same name changes the hash, and a moved folder does not),
``bytes`` for themselves, dataclasses for their fields (but those marked ``metadata={"fingerprint": False}``,
such as a record's file-and-row label). ``model_fingerprint`` describes the weights an evaluation loads: every file of
a local checkpoint folder (small files by content, large ones by size and modification time, which is
what a checkpoint rewritten in place changes), or a hub id with the revision the local cache resolves it to.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

HASH_CONTENT_UP_TO = 64 * 2**20  # files larger than this are described by size and modification time


@functools.lru_cache(maxsize=65536)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (memoised per path, size and modification time)."""
    stat = os.stat(path)
    return _file_digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def _fields(obj: Any) -> list[Any]:
    """A dataclass's values that its fingerprint holds (fields marked fingerprint=False are labels)."""
    return [getattr(obj, f.name) for f in dataclasses.fields(obj) if f.metadata.get("fingerprint", True)]


def _canonical(obj: Any, hashed: Callable[[], None] = lambda: None) -> Any:
    """``obj`` as JSON-able content; ``hashed`` is called after each file, bytes or image (the slow leaves)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__type__": type(obj).__name__,
                **{f.name: _canonical(getattr(obj, f.name), hashed) for f in dataclasses.fields(obj)
                   if f.metadata.get("fingerprint", True)}}
    if isinstance(obj, Path | bytes | bytearray | Image.Image):
        out = _leaf(obj)
        hashed()
        return out
    if isinstance(obj, Mapping):
        return {str(key): _canonical(value, hashed) for key, value in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        items = [_canonical(value, hashed) for value in obj]
        return sorted(items, key=json.dumps) if isinstance(obj, set | frozenset) else items
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    raise TypeError(f"cannot fingerprint a {type(obj).__name__}")


def _leaf(obj: Path | bytes | bytearray | Image.Image) -> dict[str, Any]:
    if isinstance(obj, Path):
        return {"file": file_digest(obj)} if obj.is_file() else {"missing file": str(obj)}
    if isinstance(obj, bytes | bytearray):
        return {"bytes": hashlib.sha256(obj).hexdigest()}
    return {"image": hashlib.sha256(obj.tobytes()).hexdigest(), "size": list(obj.size), "mode": obj.mode}


def count_leaves(obj: Any) -> int:
    """How many files, bytes and images ``obj`` holds: the progress bar's total."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(count_leaves(value) for value in _fields(obj))
    if isinstance(obj, Path | bytes | bytearray | Image.Image):
        return 1
    if isinstance(obj, Mapping):
        return sum(count_leaves(value) for value in obj.values())
    if isinstance(obj, list | tuple | set | frozenset):
        return sum(count_leaves(value) for value in obj)
    return 0


def content_hash(obj: Any, desc: str | None = None) -> str:
    """A short sha256 of ``obj`` by content (files by their bytes). ``desc``: a progress bar over its files and images
    (a benchmark's evaluation data can hold thousands)."""
    if desc is None:
        canonical = _canonical(obj)
    else:
        from unlearning.runs.progress import progress

        with progress(total=count_leaves(obj), desc=desc) as bar:
            canonical = _canonical(obj, lambda: bar.update(1))
    material = json.dumps(canonical, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:16]


def folder_fingerprint(folder: Path) -> dict[str, Any]:
    """Every file of a checkpoint folder: small ones by content, large ones by size and modification time."""
    out: dict[str, Any] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        name = path.relative_to(folder).as_posix()
        if stat.st_size <= HASH_CONTENT_UP_TO:
            out[name] = file_digest(path)
        else:
            out[name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return out


def hub_revision(model_id: str) -> str | None:
    """The commit the local HF cache holds for ``model_id`` (None when it is not cached)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model_id, "config.json")
    except Exception:  # an id the hub library cannot parse: fingerprint it by name only
        return None
    if not isinstance(cached, str):
        return None
    parts = Path(cached).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None


def model_fingerprint(*sources: str | None) -> str:
    """A hash over the weights an evaluation loads (a base and an adapter, each a folder or a hub id)."""
    described: list[Any] = []
    for source in sources:
        if source is None:
            described.append(None)
        elif Path(source).is_dir():
            described.append(folder_fingerprint(Path(source)))
        else:
            described.append({"hub": source, "revision": hub_revision(source)})
    return content_hash(described)


def content_fingerprint(source: str) -> str:
    """What a base model holds, for a training run's identity: a folder's small files by content (config,
    tokenizer, processor, and the weights of small models such as the tiny ones, which are rebuilt when deleted),
    or a hub id's cached revision. Large weight files are left out: a copied folder gets new modification times,
    and must still find its runs."""
    if not Path(source).is_dir():
        return model_fingerprint(source)
    files = folder_fingerprint(Path(source))
    return content_hash({name: digest for name, digest in files.items() if isinstance(digest, str)})
