"""Atomic writes and config redaction: a crash never leaves a half-written result, and secrets never reach disk."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

SECRET_KEY = re.compile(r"(api_?key|secret|password|passwd|(^|_)((hf|auth|access|bearer)_?)?token)$", re.IGNORECASE)
# Values shaped like the API keys of the usual providers (OpenAI sk-, Hugging Face hf_, Groq gsk_, ...), wherever
# they are pasted.
SECRET_VALUE = re.compile(r"\b(?:sk|pk|rk|hf|gsk|xai)[-_](?=[A-Za-z0-9_\-]*[0-9])(?=[A-Za-z0-9_\-]*[A-Z])"
                          r"[A-Za-z0-9_\-]{16,}")


class CorruptFile(ValueError):
    """A results or settings file that cannot be parsed; the message names it."""


def umask_mode(directory: bool) -> int:
    """The permissions the user's umask gives a new file or folder (mkstemp/mkdtemp would give 0600/0700,
    making results private to one user)."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, umask_mode(directory=False))
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def atomic_write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], columns: list[str]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return atomic_write_text(path, buffer.getvalue())


def atomic_write_dir(path: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Let ``fill`` populate a temporary directory, then swap it in for ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        tmp.chmod(umask_mode(directory=True))
        fill(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_json(path: str | os.PathLike) -> Any:
    """The parsed file; a file that is not valid JSON raises CorruptFile naming it."""
    with open(path, encoding="utf-8") as handle:
        try:
            return json.load(handle)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CorruptFile(f"{path} is not valid JSON ({error}); it may be a half-written or edited file") \
                from error


def redact(obj: Any) -> Any:
    """Replace with '***' the value of every key that looks like a secret, and every value shaped like a key."""
    if isinstance(obj, Mapping):
        return {
            key: ("***" if _is_secret(key) and value not in (None, "") else redact(value))
            for key, value in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [redact(value) for value in obj]
    if isinstance(obj, str) and SECRET_VALUE.search(obj):
        return SECRET_VALUE.sub("***", obj)
    return obj


def _is_secret(key: Any) -> bool:
    return bool(SECRET_KEY.search(str(key)))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
