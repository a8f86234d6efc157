"""The code's layout, as a newcomer relies on it: no two source modules share a name, and the
workflow modules stay import-pure (the import direction itself is ``lint-imports``' contract,
run in CI)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "rentan",
    "bench",
    "api",
    "services",
    "activities",
    "workflows",
    "models",
    "core",
    "domain",
    "bpjs_sim",
    "migrations",
)
EXEMPT = {"__init__.py", "__main__.py", "env.py"}  # package markers, alembic's entry point


def test_no_two_source_modules_share_a_name() -> None:
    places: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path.name not in EXEMPT:
                places[path.name].append(str(path.relative_to(ROOT)))
    places["worker.py"].append("worker.py")
    shared = {name: paths for name, paths in places.items() if len(paths) > 1}
    assert shared == {}


def test_the_import_contract_names_every_top_level_package() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    contract = pyproject[pyproject.index("[tool.importlinter]") :]
    for package in PACKAGES:
        if package != "migrations":  # alembic's scripts: loaded by alembic, imported by nothing
            assert f'"{package}' in contract, package
