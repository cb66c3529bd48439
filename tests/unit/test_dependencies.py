"""What the product imports, it declares: nothing under `api/` or `domain/` imports a package
that `pip install ordergate` would not bring (issue #28: httpx was a development dependency,
and a plain install failed `migrate` and `serve` with ModuleNotFoundError)."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OWN = {"api", "domain", "policies", "tests"}
# Optional features, each behind a setting and its own extra (README: Operations).
FEATURE_EXTRAS = {"redis", "tracing"}


def _imported_modules() -> dict[str, set[str]]:
    """Top-level module → files importing it, for every import anywhere in api/ and domain/
    (inside functions too: a lazy import still has to be installed)."""
    found: dict[str, set[str]] = {}
    for path in [*ROOT.glob("api/**/*.py"), *ROOT.glob("domain/**/*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def _name(requirement: str) -> str:
    return re.split(r"[\s\[;<>=!~(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(extras: set[str]) -> set[str]:
    """Distributions `pip install ordergate[extras]` installs (runtime, no dev extra)."""
    wanted: list[tuple[str, set[str]]] = [("ordergate", extras)]
    seen: set[str] = set()
    while wanted:
        name, with_extras = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = distribution(name).requires or []
        except PackageNotFoundError:  # a marker-excluded or platform package not installed
            continue
        for requirement in requirements:
            marker = requirement.split(";", 1)[1] if ";" in requirement else ""
            extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
            if extra and extra.group(1) not in with_extras:
                continue
            inner = re.search(r"\[([^\]]+)\]", requirement.split(";", 1)[0])
            nested = {e.strip() for e in inner.group(1).split(",")} if inner else set()
            wanted.append((_name(requirement), nested))
    return seen


def test_everything_the_product_imports_is_a_declared_runtime_dependency() -> None:
    runtime = _closure(set())
    optional = _closure(FEATURE_EXTRAS) - runtime
    owners = packages_distributions()
    undeclared = {}
    for module, files in sorted(_imported_modules().items()):
        if module in OWN or module in sys.stdlib_module_names or module == "__future__":
            continue
        dists = {_name(d) for d in owners.get(module, [module])}
        if dists & runtime:
            continue
        if dists & optional:
            continue  # an optional feature's extra (Redis budget, tracing), behind its setting
        undeclared[module] = sorted(files)

    assert undeclared == {}, f"imported but not a runtime dependency: {undeclared}"


def test_the_check_itself_sees_a_development_only_package() -> None:
    """The oracle is not the code under test: pytest is installed here, and is no runtime
    dependency, so the closure must leave it out."""
    assert "pytest" not in _closure(set())
    assert {"strawberry-graphql", "starlette", "sqlalchemy", "httpx"} <= _closure(set())
