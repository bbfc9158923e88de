"""Stand-in of ``slicer.packaging``: requirements are recorded, nothing is installed."""

from pathlib import Path

_ensured = []


def load_requirements(path):
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


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
    _ensured.append((list(requirements), prompt_install, requester))
    return None
