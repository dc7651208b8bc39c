"""requirements.lock (what every install uses) still satisfies pyproject.toml; `make lock` renews it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def test_every_dependency_is_locked_at_a_version_pyproject_allows():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]]
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==", 1)
            pins[canonicalize_name(name.strip())] = version.split()[0]
    stale = [
        f"{r} (locked {pins.get(canonicalize_name(r.name))})"
        for r in wanted
        if canonicalize_name(r.name) not in pins or pins[canonicalize_name(r.name)] not in r.specifier
    ]
    assert stale == [], "run `make lock`: " + ", ".join(stale)
    for r in wanted:
        assert r.specifier and any(s.operator == "<" for s in r.specifier), f"{r}: give the major version's bound"
