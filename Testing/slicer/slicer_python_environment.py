"""The Python that the engine finds inside 3D Slicer: what Slicer ships, plus torch and
``Resources/requirements.txt``, and nothing else.

The test environment has more (slicerio, nilearn, pytest, ...). A package that the engine
imports but that neither Slicer nor ``requirements.txt`` provides would work in the tests and
fail in Slicer, so the tests' ``PythonSlicer`` hides every other installed package: a
``sitecustomize`` module on its ``PYTHONPATH`` marks them as absent, so that importing one
fails as for a package that is not installed.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import Iterable, Set

from slicer_module_helpers import MODULE_FOLDER

REQUIREMENTS_FILE = MODULE_FOLDER / "Resources" / "requirements.txt"

SLICER_SHIPPED = {
    # the Python packages of the 3D Slicer 5.8 to 5.12 installers (SuperBuild/External_python-*)
    "numpy",
    "scipy",
    "simpleitk",
    "vtk",
    "pydicom",
    "dicomweb-client",
    "requests",
    "urllib3",
    "idna",
    "charset-normalizer",
    "certifi",
    "packaging",
    "pip",
    "setuptools",
    "wheel",
    "six",
}
"""Distributions (normalised names) that every supported Slicer release ships."""

ENGINE_INSTALLED_SEPARATELY = {"torch"}
"""Installed through PyTorch Utils, not from ``requirements.txt``."""


def normalise(name: str) -> str:
    """PEP 503 normalised distribution name (``SimpleITK`` -> ``simpleitk``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(lines: Iterable[str]) -> Set[str]:
    """Distribution names of requirement lines (comments, markers and versions dropped)."""
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if match:
            names.add(normalise(match.group(1)))
    return names


def requirements_of_module() -> Set[str]:
    """Distribution names listed in the module's ``requirements.txt``."""
    return requirement_names(REQUIREMENTS_FILE.read_text(encoding="utf-8").splitlines())


def _dependencies(name: str) -> Set[str]:
    try:
        requires = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return set()
    # requirements that apply only with an extra ("; extra == ...") are not installed
    return requirement_names(line for line in requires if "extra ==" not in line)


def allowed_distributions() -> Set[str]:
    """What Slicer's Python holds once the module installed its dependencies.

    Slicer's own packages are builds of Slicer (VTK, for example, without the Python packages
    that the ``vtk`` wheel asks for); only what pip installs brings its dependencies.
    """
    allowed: Set[str] = set(SLICER_SHIPPED)
    pending = list(ENGINE_INSTALLED_SEPARATELY | requirements_of_module())
    while pending:
        name = pending.pop()
        if name in allowed:
            continue
        allowed.add(name)
        pending.extend(_dependencies(name) - allowed)
    return allowed


def hidden_top_level_modules() -> Set[str]:
    """Top-level import names that only distributions outside :func:`allowed_distributions`
    provide (the project itself is on the path through the module folder)."""
    allowed = allowed_distributions() | {"eoformer-segmentation"}
    providers = importlib.metadata.packages_distributions()
    return {
        module
        for module, distributions in providers.items()
        if not module.startswith("_")
        and not any(normalise(distribution) in allowed for distribution in distributions)
    }


SITECUSTOMIZE = '''"""Hide the packages that 3D Slicer's Python would not have (written by the tests).

A ``None`` entry in ``sys.modules`` is how Python marks a module as absent: ``import`` raises
ModuleNotFoundError and ``importlib.util.find_spec`` returns None, as for a package that is
not installed.
"""
import sys

for _name in {hidden!r}:
    sys.modules.setdefault(_name, None)
'''


def write_sitecustomize(folder: Path) -> Path:
    """Write the ``sitecustomize.py`` that hides the other packages into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sitecustomize.py"
    path.write_text(
        SITECUSTOMIZE.format(hidden=sorted(hidden_top_level_modules())), encoding="utf-8"
    )
    return path
