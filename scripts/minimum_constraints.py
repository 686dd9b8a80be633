"""Pin every dependency at the lower bound pyproject.toml declares, for the suite's run at those versions.

    python scripts/minimum_constraints.py > constraints.txt   # "package==lower bound", one a line
    pip install -c constraints.txt -e '.[test,qlora,track]'

``make test-min`` does both in its own virtual environment and runs the suite there, so the lower bounds
are versions the suite passed on. torch is left out: the CPU build is installed first, as ``make`` does.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
SKIP = {"torch"}


def lower_bounds(pyproject: Path = PYPROJECT) -> dict[str, str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in ("test", "qlora", "track"):
        requirements += project.get("optional-dependencies", {}).get(extra, [])
    bounds = {}
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(?:\[[^]]*\])?\s*([^;]*)", requirement)
        name, spec = match.group(1).lower(), match.group(2)
        lower = re.search(r">=\s*([0-9][^,\s]*)", spec)
        if name not in SKIP and lower:
            bounds[name] = lower.group(1)
    return bounds


if __name__ == "__main__":
    sys.stdout.write("".join(f"{name}=={version}\n" for name, version in sorted(lower_bounds().items())))
