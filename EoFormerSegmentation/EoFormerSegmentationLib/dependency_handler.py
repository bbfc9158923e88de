"""Which Python packages the engine still needs in 3D Slicer's Python, by version.

Checks look at the installed distributions (``importlib.metadata``) without importing them, so
an old torch or MONAI left by another extension is found before the engine starts, and
importing torch into Slicer's own process is never needed. The installation itself (PyTorch
Utils, ``slicer.packaging``, pip) is done by the module's Logic; this module says what to
install and what pip must never touch. Standard library only.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

__all__ = [
    "TORCH_MINIMUM_VERSION",
    "PROTECTED_PACKAGES",
    "SLICER_SHIPPED_PACKAGES",
    "Requirement",
    "read_requirements",
    "installed_version",
    "version_at_least",
    "requirement_problems",
    "constraint_lines",
]

TORCH_MINIMUM_VERSION = "2.3"
"""The oldest PyTorch the engine runs with (``torch.amp.GradScaler("cuda")`` needs 2.3)."""

PROTECTED_PACKAGES = ("torch", "SimpleITK")
"""Packages pip must never replace: torch is the build PyTorch Utils chose for the GPU (pip
would put a CPU wheel in its place), SimpleITK is Slicer's own build."""

SLICER_SHIPPED_PACKAGES = ("numpy", "scipy", "SimpleITK")
"""Packages of Slicer's Python that the engine uses; they are never installed by the module."""

PathLike = Union[str, Path]


class Requirement:
    """A distribution name with an optional minimum version (``monai>=1.3``).

    Args:
        name: distribution name as pip spells it.
        minimum: lowest acceptable version, or "" for any.
    """

    def __init__(self, name: str, minimum: str = ""):
        self.name = name
        self.minimum = minimum

    def __str__(self) -> str:
        return f"{self.name}>={self.minimum}" if self.minimum else self.name

    def __repr__(self) -> str:
        return f"Requirement({str(self)!r})"


def read_requirements(path: PathLike) -> List[Requirement]:
    """The requirements of a ``requirements.txt`` (``name`` or ``name>=version`` lines).

    Raises:
        ValueError: a line in another form (the module's file uses only these two).
    """
    requirements = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:>=\s*([0-9][0-9A-Za-z.]*))?", line)
        if not match:
            raise ValueError(f"{path}:{number}: expected 'name' or 'name>=version', got {line!r}")
        requirements.append(Requirement(match.group(1), match.group(2) or ""))
    return requirements


def installed_version(name: str) -> Optional[str]:
    """Version of an installed distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _release(version: str) -> Tuple[int, ...]:
    """Numeric release of a version: ``"2.5.1+cu121"`` -> ``(2, 5, 1)``, ``"1.4rc1"`` -> ``(1, 4)``."""
    numbers = []
    for part in version.split("+", 1)[0].split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        numbers.append(int(match.group()))
        if match.end() != len(part):
            break
    return tuple(numbers)


def version_at_least(version: str, minimum: str) -> bool:
    """Whether ``version`` is ``minimum`` or newer (release numbers compared, local tags
    ignored: ``2.3.0+cpu`` satisfies ``2.3``)."""
    have, need = _release(version), _release(minimum)
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) >= need + (0,) * (width - len(need))


def requirement_problems(
    requirements: List[Requirement],
    version_of: Callable[[str], Optional[str]] = installed_version,
) -> List[str]:
    """One sentence per requirement that the installed packages do not meet.

    Args:
        requirements: what the engine needs (torch included).
        version_of: name -> installed version or None (defaults to the installed
            distributions).

    Returns:
        For example ``["torch is not installed", "monai 1.2.0 is too old (1.3 or newer
        needed)"]``; empty when everything is there.
    """
    problems = []
    for requirement in requirements:
        version = version_of(requirement.name)
        if version is None:
            problems.append(f"{requirement.name} is not installed")
        elif requirement.minimum and not version_at_least(version, requirement.minimum):
            problems.append(
                f"{requirement.name} {version} is too old ({requirement.minimum} or newer needed)"
            )
    return problems


def constraint_lines(
    version_of: Callable[[str], Optional[str]] = installed_version,
) -> List[str]:
    """pip constraints that pin :data:`PROTECTED_PACKAGES` to the installed builds
    (``torch==2.5.1+cu121``), so that installing the other requirements cannot replace them."""
    pins: Dict[str, str] = {}
    for name in PROTECTED_PACKAGES:
        version = version_of(name)
        if version:
            pins[name] = version
    return [f"{name}=={version}" for name, version in pins.items()]
