"""The install surface: pinned dependencies agree between pyproject.toml and environment.yml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)==([^\s;]+)\s*", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_environment_yml_pins_match_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]
    py_pins = _pins(wanted)
    assert len(py_pins) == len(wanted), "every dependency in pyproject.toml is pinned with =="
    env_lines = [re.sub(r"^\s*-\s*", "", line) for line in (ROOT / "environment.yml").read_text().splitlines()]
    assert _pins(env_lines) == py_pins


def test_torch_and_torchvision_pinned_together() -> None:
    pins = _pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert (pins["torch"], pins["torchvision"]) == ("2.14.1", "0.29.1")
