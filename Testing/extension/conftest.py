"""Fixtures of the extension-packaging tests."""

import json
from pathlib import Path
from typing import Any, Dict

import pytest

SLICER_API_MANIFEST = (
    Path(__file__).resolve().parents[2].parent / "shared" / "slicer-api" / "manifest.json"
)


@pytest.fixture(scope="session")
def slicer_templates() -> Dict[str, Any]:
    """The ``module_templates`` section of the Slicer API manifest (``../shared/slicer-api``).

    It names the keywords of Slicer's CMake macros, the ``EXTENSION_*`` variables and the keys
    of an extension description file, as read from the Slicer source.
    """
    if not SLICER_API_MANIFEST.is_file():
        raise FileNotFoundError(f"Slicer API manifest not found at {SLICER_API_MANIFEST}")
    return json.loads(SLICER_API_MANIFEST.read_text(encoding="utf-8"))["module_templates"]
