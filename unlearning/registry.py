"""Name -> object registries, so a config string picks a method, metric or builder.

A new forget method is one module that decorates its class with ``@METHODS.register("name")``
and one YAML under ``config/method/``; nothing else needs editing.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to objects that fails loudly, listing what it knows."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        if name not in self._entries:
            known = sorted(self._entries)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(known)}.{hint}")
        return self._entries[name]

    def find(self, name: str, module: str) -> T:
        """``name``, importing ``module`` first (which registers it) when it is not registered yet: packages are
        found by name, with no import list to edit."""
        if name not in self._entries:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as error:
                parts = module.split(".")
                if error.name not in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}:
                    raise  # a missing dependency inside the module, not a missing module
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))
