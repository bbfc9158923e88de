"""The extension description (EoFormer.s4ext) says what CMakeLists.txt says, with working links."""

import re
import struct
from pathlib import Path
from typing import Dict, Tuple

import pytest
from module_file_lists import REPOSITORY, cmake_variables, read_cmake_commands

DESCRIPTION_FILE = REPOSITORY / "EoFormer.s4ext"
RAW_URL = re.compile(
    r"^https://raw\.githubusercontent\.com/(?P<owner>[^/]+)/(?P<repo>[^/]+)/(?P<revision>[^/]+)/(?P<path>.+)$"
)

# What the Extensions Index needs to build the extension and to show it in the manager.
KEYS_WITH_VALUES = (
    "scm",
    "scmurl",
    "scmrevision",
    "depends",
    "build_subdirectory",
    "homepage",
    "contributors",
    "category",
    "iconurl",
    "status",
    "description",
    "screenshoturls",
    "enabled",
)


def read_extension_description(path: Path) -> Dict[str, str]:
    """Keys and values of an extension description file (first word of a line is its key)."""
    entries: Dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.strip().partition(" ")
        assert key not in entries, f"{path.name}:{number}: {key} given twice"
        entries[key] = value.strip()
    return entries


def png_size(path: Path) -> Tuple[int, int]:
    """Width and height in pixels of a PNG file, from its header."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG file"
    return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="module")
def description() -> Dict[str, str]:
    return read_extension_description(DESCRIPTION_FILE)


@pytest.fixture(scope="module")
def extension_variables() -> Dict[str, str]:
    return cmake_variables(REPOSITORY / "CMakeLists.txt")


def test_description_has_every_key_of_the_slicer_template(description, slicer_templates):
    known_keys = slicer_templates["s4ext_key_names"]
    assert sorted(description) == sorted(known_keys)
    required = [
        field["name"].lower()
        for field in slicer_templates["extension_metadata_spec"]["fields"]
        if field["required"]
    ]
    for key in set(required) | set(KEYS_WITH_VALUES):
        assert description[key], f"{DESCRIPTION_FILE.name}: {key} has no value"


def test_description_matches_the_cmake_project(description, extension_variables):
    project = [c for c in read_cmake_commands(REPOSITORY / "CMakeLists.txt") if c.name == "project"]
    assert [c.arguments[0] for c in project] == [DESCRIPTION_FILE.stem]
    assert description["depends"].split() == extension_variables["EXTENSION_DEPENDS"].split(";")
    assert description["depends"] == "PyTorch"
    assert description["category"] == extension_variables["EXTENSION_CATEGORY"] == "Segmentation"
    for key in ("homepage", "contributors", "description", "iconurl", "screenshoturls", "status"):
        assert description[key] == extension_variables[f"EXTENSION_{key.upper()}"], key
    assert description["scm"] == "git"
    assert description["scmurl"] in (description["homepage"], description["homepage"] + ".git")
    assert description["enabled"] in ("0", "1")
    build_folder = REPOSITORY / description["build_subdirectory"]
    assert (build_folder / "CMakeLists.txt").is_file()


def test_icon_and_screenshot_urls_point_at_files_of_this_repository(description):
    homepage_owner_repo = description["homepage"].rstrip("/").split("/")[-2:]
    urls = [description["iconurl"]] + description["screenshoturls"].split()
    assert len(urls) >= 2
    for url in urls:
        match = RAW_URL.match(url)
        assert match, f"{url} is not a raw file URL of the repository"
        assert [match["owner"], match["repo"]] == homepage_owner_repo, url
        assert match["revision"] == description["scmrevision"], url
        assert (REPOSITORY / match["path"]).is_file(), f"{url}: {match['path']} does not exist"
        assert match["path"].lower().endswith(".png"), url
    icon = REPOSITORY / RAW_URL.match(description["iconurl"])["path"]
    assert png_size(icon) == (128, 128)


def test_module_icon_is_a_square_png():
    icon = REPOSITORY / "EoFormerSegmentation" / "Resources" / "Icons" / "EoFormerSegmentation.png"
    width, height = png_size(icon)
    assert width == height >= 64


def test_readme_links_and_images_point_at_existing_files():
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", readme) + re.findall(r'src="([^"]+)"', readme)
    local = [t for t in targets if not re.match(r"^[a-z]+:|^#", t)]
    assert local, "README.md links no file of the repository"
    missing = [t for t in local if not (REPOSITORY / t.split("#")[0]).exists()]
    assert not missing, f"README.md links files that do not exist: {missing}"


def test_readme_starts_with_the_two_quick_start_commands():
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```")[1].strip().splitlines()
    assert readme.index("## Quick start") < readme.index("```")
    assert len(first_block) == 2
    segment, run_tests = first_block
    assert "pip install -e ." in segment and " eoformer segment " in segment
    assert "pip install torch==2.13.0" in run_tests and run_tests.endswith(
        "python -m pytest -q Testing"
    )
    ci_script = (REPOSITORY / ".ci" / "run").read_text(encoding="utf-8")
    assert ci_script.rstrip().splitlines()[-1] == "python -m pytest -q Testing"
    inputs = re.findall(r"--(?:t1|t1ce|t2|flair) (\S+)", segment)
    assert len(inputs) == 4
    for path in inputs:
        assert (REPOSITORY / path).is_file(), f"the quick start reads {path}, which is missing"
