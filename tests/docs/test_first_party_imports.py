"""Every ``from <first-party module> import NAME`` in the code resolves, the ones inside functions too.

Lazy imports (inside a function, so an optional feature costs nothing until used) are not run by
importing their module; after a package moves they fail only when that path runs (a benchmark's last
table, an error branch). This reads every such statement and resolves it.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("streamer", "model", "benchmarks")


def first_party_imports() -> list[tuple[str, int, str, str]]:
    found = []
    files = [ROOT / "run_stream.py", *(p for pkg in FIRST_PARTY for p in sorted((ROOT / pkg).rglob("*.py")))]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] in FIRST_PARTY:
                found += [(str(path.relative_to(ROOT)), node.lineno, node.module, a.name) for a in node.names]
    return found


def resolves(module: str, name: str) -> bool:
    try:
        owner = importlib.import_module(module)
    except ImportError:
        return False
    if name == "*" or hasattr(owner, name):
        return True
    try:
        importlib.import_module(f"{module}.{name}")
        return True
    except ImportError:
        return False


def test_the_scan_sees_lazy_imports_and_a_wrong_one_fails():
    imports = first_party_imports()
    assert any(path == "benchmarks/bench_console.py" and module == "streamer.sources.synthetic"
               for path, _, module, _ in imports)  # the lazy import inside clip_cost
    assert not resolves("streamer.sources.synthetic.capture", "SyntheticCapture")


@pytest.mark.timeout(300)
def test_every_first_party_import_resolves():
    broken = [f"{path}:{line}: from {module} import {name}"
              for path, line, module, name in first_party_imports() if not resolves(module, name)]
    assert not broken, "\n".join(broken)
