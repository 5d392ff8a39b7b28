"""The engine names no benchmark: a benchmark is a package beside it, found by name."""

import ast
import re
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "unlearning"
BENCHMARK_NAMES = ("fiubench", "mllmu", "safeeraser", "efuf")
# names that are also English words or parts of them ("clearing", "cumulative"): matched as identifiers only
WORD_NAMES = ("clear", "umu")


def _code_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Identifiers, imported module names and string constants that are not docstrings."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.Name):
            out.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute) and node.attr != "clear":  # dict.clear(), set.clear(): Python's
            out.append((node.lineno, node.attr))
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, node.module or ""))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            out.append((node.lineno, node.name))
    return out


def test_no_benchmark_is_named_in_engine_code():
    """Mentions in comments and docstrings (where a behaviour comes from) are fine; code is not."""
    found = []
    for path in sorted(ENGINE.rglob("*.py")):
        for line, text in _code_strings(ast.parse(path.read_text(encoding="utf-8"))):
            if any(name in text.lower() for name in BENCHMARK_NAMES) or any(
                    re.search(rf"(?<![A-Za-z]){name}(?![A-Za-z])", text.lower().replace("_", " "))
                    for name in WORD_NAMES):
                found.append(f"{path.relative_to(ENGINE.parent)}:{line}: {text[:60]!r}")
    assert not found, "\n".join(found)
