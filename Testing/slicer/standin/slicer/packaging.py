"""Stand-in of ``slicer.packaging`` (Slicer 5.12 and later): requirements are checked for the
types Slicer accepts and recorded; nothing is installed. For runs as Slicer 5.8 or 5.10 the
tests' ``slicer_release`` fixture makes ``import slicer.packaging`` fail, as it does there.
"""

from os import PathLike
from pathlib import Path

from packaging.requirements import Requirement

_ensured = []


def load_requirements(path):
    """``Requirement`` objects of a requirements file (as Slicer returns them, not strings)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    requirements = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            requirements.append(Requirement(line))
    return requirements


def pip_ensure(
    requirements,
    constraints=None,
    skip_packages=None,
    prompt_install=True,
    prompt_restart=True,
    requester=None,
    skip_in_testing=True,
    show_progress=True,
):
    items = requirements if isinstance(requirements, list) else [requirements]
    for item in items:
        if not isinstance(item, (str, Requirement)):
            raise TypeError(f"requirements must be str or Requirement, not {type(item).__name__}")
    if constraints is not None:
        if not isinstance(constraints, (str, PathLike)) or not Path(constraints).is_file():
            raise TypeError(f"constraints must be the path of a constraints file: {constraints!r}")
    if skip_packages is not None and not all(isinstance(n, str) for n in skip_packages):
        raise TypeError("skip_packages must be a list of package names")
    _ensured.append(
        {
            "requirements": [str(item) for item in items],
            "constraints": Path(constraints).read_text(encoding="utf-8") if constraints else "",
            "skip_packages": list(skip_packages or []),
            "prompt_install": prompt_install,
            "requester": requester,
        }
    )
    return None
