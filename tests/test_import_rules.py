"""The import rules of DESIGN.md, checked on the source with `ast`.

- data imports nothing of the project;
- adapters may import data;
- encoder may import data and adapters;
- chorus_qa may import data, adapters and encoder;
- app.py imports chorus_qa and data only;
- model code never imports training loops (modules named pretrain / train_*).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "adapters", "encoder", "chorus_qa")
ALLOWED = {
    "data": set(),
    "adapters": {"data"},
    "encoder": {"data", "adapters"},
    "chorus_qa": {"data", "adapters", "encoder"},
    "app": {"chorus_qa", "data"},
}
TRAINING_MODULES = ("pretrain", "train_qa")
# Entry modules (training loops, CLIs) may import training code; models may not.
ENTRY_MODULES = {"encoder/pretrain.py", "chorus_qa/train_qa.py", "chorus_qa/cli.py", "chorus_qa/benchmark.py"}


def project_imports(source: str, rel: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, dotted module) of every project import in ``source``, the file at ``rel`` (path parts
    without suffix, e.g. ("encoder", "ptv3")), with relative imports resolved."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(rel[: len(rel) - node.level])
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [mod]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                found.append((node.lineno, name))
    return found


def source_files():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield pkg, path
    if (ROOT / "app.py").exists():
        yield "app", ROOT / "app.py"


def test_import_parser_resolves_relative_imports():
    code = "from ..data import scene\nfrom . import ptv3\nimport chorus_qa.model\nimport numpy\n"
    mods = [m for _, m in project_imports(code, ("encoder", "sub", "x"))]
    assert mods == ["encoder.data", "encoder.sub", "chorus_qa.model"]
    # a relative import that climbs out of the package is seen as the package it lands in
    assert [m for _, m in project_imports("from ..chorus_qa import model\n", ("encoder", "x"))] == ["chorus_qa"]


@pytest.mark.parametrize("pkg,path", list(source_files()), ids=lambda v: str(v).replace(str(ROOT) + "/", ""))
def test_import_rules(pkg, path):
    allowed = ALLOWED[pkg] | {pkg}
    rel = str(path.relative_to(ROOT))
    for line, mod in project_imports(path.read_text(), path.relative_to(ROOT).with_suffix("").parts):
        top = mod.split(".")[0]
        assert top in allowed, f"{rel}:{line} imports {mod}; {pkg} may import only {sorted(allowed)}"
        if rel not in ENTRY_MODULES:
            leaf = mod.split(".")[-1]
            assert leaf not in TRAINING_MODULES, f"{rel}:{line} imports training loop {mod}; models never import training code"
