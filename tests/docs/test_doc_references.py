"""Every code reference in docs/ARCHITECTURE.md and docs/RELIABILITY.md names something that exists.

The documents point into the code in three forms, always inside backticks:
``path/to/file.py:Name`` or ``path/to/file.py:Class.method`` (a definition in that file),
``tests/.../test_x.py::test_name`` (a test function), and dotted names such as
``streamer.core.ring.FrameRing.grow`` (a module, then a definition in it). Each is resolved by
reading the source with ``ast`` (no project module is imported for it), so a rename or a move that
leaves a document behind fails here, naming the document and the reference. A dotted name that is
not code but a config key (``model.compile``, ``publisher.sndhwm``) is checked against the config
model (:class:`streamer.config.AppConfig`) instead.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = ["docs/ARCHITECTURE.md", "docs/RELIABILITY.md"]

_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_FILE_DEF = re.compile(r"^((?:[\w.-]+/)*[\w.-]+\.py):([A-Za-z_][\w.]*)$")
_TEST = re.compile(r"^(tests/(?:[\w.-]+/)*test_\w+\.py)::(test_\w+)$")
_FILE = re.compile(r"^((?:[\w.-]+/)+[\w.-]+\.(?:py|md|json|yaml))$")
_FILE_SUFFIXES = {"safetensors", "json", "yaml", "md", "py", "pyth", "pth", "mp4"}  #: model.safetensors is a file
_DOTTED = re.compile(r"^((?:model|streamer)(?:\.[A-Za-z_]\w*)+)(?:\(.*)?$")


@lru_cache(maxsize=None)
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _names_in(body: list[ast.stmt], *, with_self: bool = False) -> dict[str, ast.AST]:
    """What a module or class body defines: functions, classes, assignments, imports (and, for a
    class, the ``self.x = ...`` attributes its methods set)."""
    out: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        out[name.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                out[(alias.asname or alias.name).split(".")[0]] = node
        elif isinstance(node, (ast.If, ast.Try)):  # names defined under a guard still exist
            out.update(_names_in(node.body))
    if "__getattr__" in out:  # a lazy package: the string keys of its table of exports
        for node in body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                out.update({k.value: node for k in node.value.keys
                            if isinstance(k, ast.Constant) and isinstance(k.value, str)})
    if with_self:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    targets = sub.targets if isinstance(sub, ast.Assign) else \
                        [sub.target] if isinstance(sub, (ast.AnnAssign, ast.AugAssign)) else []
                    for t in targets:
                        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                            out.setdefault(t.attr, sub)
    return out


def _resolve(path: Path, qualname: str) -> str | None:
    """None if ``qualname`` is defined in the file at ``path``, else why not."""
    if not path.is_file():
        return f"{path.relative_to(REPO)} does not exist"
    names = _names_in(_tree(path).body)
    parts = qualname.split(".")
    for i, part in enumerate(parts):
        node = names.get(part)
        if node is None:
            return f"{'.'.join(parts[:i + 1])} is not defined in {path.relative_to(REPO)}"
        if i + 1 < len(parts):
            if not isinstance(node, ast.ClassDef):
                return f"{'.'.join(parts[:i + 1])} in {path.relative_to(REPO)} is not a class"
            names = _names_in(node.body, with_self=True)
    return None


def _module_file(dotted: list[str]) -> tuple[Path, int] | None:
    """The file of the longest importable prefix of ``dotted``, and how many parts it took."""
    for n in range(len(dotted), 0, -1):
        base = REPO.joinpath(*dotted[:n])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate, n
    return None


def _config_key(parts: list[str]) -> bool:
    """Whether ``parts`` is a key path of the config file (section, then keys)."""
    from pydantic import BaseModel

    from streamer.config import AppConfig

    model: type[BaseModel] | None = AppConfig
    for part in parts:
        if model is None or part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return True


def check(ref: str) -> str | None:
    """None if the reference resolves; else one line saying what is missing. Spans that are not
    references (options, values, shell commands) are not checked: None as well."""
    if m := _TEST.match(ref):
        return _resolve(REPO / m.group(1), m.group(2))
    if m := _FILE_DEF.match(ref):
        return _resolve(REPO / m.group(1), m.group(2))
    if m := _FILE.match(ref):
        return None if (REPO / m.group(1)).exists() else f"{m.group(1)} does not exist"
    if (m := _DOTTED.match(ref)) and m.group(1).rsplit(".", 1)[1] not in _FILE_SUFFIXES:
        parts = m.group(1).split(".")
        found = _module_file(parts)
        if found is None:
            return f"no module for {m.group(1)}"
        path, used = found
        why = None if used == len(parts) else _resolve(path, ".".join(parts[used:]))
        return None if why is None or _config_key(parts) else why
    return None


def references(doc: str) -> list[str]:
    return [span.strip() for span in _CODE_SPAN.findall((REPO / doc).read_text())]


@pytest.mark.parametrize("doc", DOCS)
def test_every_code_reference_in_the_doc_exists(doc):
    refs = references(doc)
    assert len([r for r in refs if _FILE_DEF.match(r) or _TEST.match(r)]) >= 20, f"{doc} cites too little code"
    missing = [f"`{ref}`: {why}" for ref in refs if (why := check(ref)) is not None]
    assert not missing, f"{doc}:\n" + "\n".join(missing)


def test_the_checker_finds_what_is_missing():
    assert check("streamer/core/ring.py:FrameRing.grow") is None
    assert check("streamer/core/ring.py:FrameRing.capacity") is None  # set in __init__
    assert check("streamer.core.ring.FrameRing") is None
    assert check("model.load_model(source, *, precision)") is None  # re-exported by model/__init__.py
    assert check("tests/streamer/test_ring.py::test_wrap_around_keeps_the_newest_capacity_frames") is None
    assert "is not defined" in check("streamer/core/ring.py:FrameRing.no_such_method")
    assert "is not defined" in check("streamer/core/ring.py:NoSuchRing")
    assert "does not exist" in check("streamer/core/no_such_file.py:FrameRing")
    assert "is not defined" in check("tests/streamer/test_ring.py::test_no_such_test")
    assert "is not defined" in check("streamer.core.ring.NoSuchRing")
    assert "does not exist" in check("docs/NO_SUCH.md")
    assert check("model.safetensors") is None  # a file name, not code
    assert "is not defined" in check("model.no_such_export")
    assert check("model.compile") is None and check("publisher.sndhwm") is None  # config keys
    assert "is not defined" in check("model.no_such_key")
    assert check("--publish ADDRESS") is None and check("tcp://127.0.0.1:*") is None
