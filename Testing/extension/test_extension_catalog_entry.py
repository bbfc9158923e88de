"""The Extensions Index catalog entry (EoFormer.json, read since Slicer 5.8) and the rest of the
extension's metadata as the index and Slicer's template expect them."""

from __future__ import annotations

import ast
import json
import re

import pytest
from module_file_lists import REPOSITORY, cmake_variables, read_cmake_commands
from test_extension_description import DESCRIPTION_FILE, read_extension_description

CATALOG_ENTRY = REPOSITORY / "EoFormer.json"
MODULE_FILE = REPOSITORY / "EoFormerSegmentation" / "EoFormerSegmentation.py"

# Slicer/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json, restated: required keys,
# the type of every allowed key (no other key is allowed) and the enumerated values.
SCHEMA_ID = (
    "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
    "slicer-extension-catalog-entry-schema-v1.0.1.json#"
)
REQUIRED = ("$schema", "category", "scm_url")
TYPES = {
    "$schema": str,
    "category": str,
    "scm_url": str,
    "scm_revision": str,
    "scm_type": str,
    "build_dependencies": list,
    "build_subdirectory": str,
    "enabled": bool,
    "tier": int,
}
ENUMS = {"scm_type": ("git", "local"), "tier": (1, 3, 5)}


def schema_problems(entry: dict) -> list:
    """Why ``entry`` is not valid against the catalog entry schema v1.0.1 (empty if valid)."""
    problems = [f"missing {key}" for key in REQUIRED if key not in entry]
    for key, value in entry.items():
        if key not in TYPES:
            problems.append(f"{key} is not allowed")
        elif not isinstance(value, TYPES[key]) or (TYPES[key] is int and isinstance(value, bool)):
            problems.append(f"{key} must be {TYPES[key].__name__}")
        elif key in ENUMS and value not in ENUMS[key]:
            problems.append(f"{key} must be one of {ENUMS[key]}")
        elif key == "build_dependencies" and not all(isinstance(v, str) for v in value):
            problems.append("build_dependencies must list names")
    return problems


@pytest.fixture(scope="module")
def entry() -> dict:
    return json.loads(CATALOG_ENTRY.read_text(encoding="utf-8"))


def test_catalog_entry_is_valid_against_the_schema(entry):
    assert schema_problems(entry) == []
    assert entry["$schema"] == SCHEMA_ID
    # the checker refuses what the schema refuses
    assert schema_problems({"category": "x"}) == ["missing $schema", "missing scm_url"]
    assert "description is not allowed" in schema_problems(dict(entry, description="x"))
    assert "tier must be one of (1, 3, 5)" in schema_problems(dict(entry, tier=2))


def test_catalog_entry_builds_what_cmake_and_the_old_description_say(entry):
    variables = cmake_variables(REPOSITORY / "CMakeLists.txt")
    description = read_extension_description(DESCRIPTION_FILE)
    assert CATALOG_ENTRY.stem == DESCRIPTION_FILE.stem == "EoFormer"
    assert entry["category"] == variables["EXTENSION_CATEGORY"] == description["category"]
    assert entry["scm_url"] == description["scmurl"]
    assert entry["scm_revision"] == description["scmrevision"]
    assert entry["build_dependencies"] == variables["EXTENSION_DEPENDS"].split(";")
    assert entry["build_subdirectory"] == description["build_subdirectory"]
    assert (REPOSITORY / entry["build_subdirectory"] / "CMakeLists.txt").is_file()
    assert str(entry["tier"]) == description["tier"]


def test_cmake_minimum_version_is_a_policy_range_like_the_template():
    (command,) = [
        c
        for c in read_cmake_commands(REPOSITORY / "CMakeLists.txt")
        if c.name == "cmake_minimum_required"
    ]
    assert command.arguments[0] == "VERSION"
    match = re.fullmatch(r"(\d+(?:\.\d+)+)\.\.\.(\d+(?:\.\d+)+)", command.arguments[1])
    assert match, command.arguments
    low, high = (tuple(int(p) for p in v.split(".")) for v in match.groups())
    assert (3, 16) <= low < high
    assert "FATAL_ERROR" in command.arguments


def test_contributors_are_named_with_their_organization():
    pattern = re.compile(r"^[^(),]+ \([^()]+\)$")
    variables = cmake_variables(REPOSITORY / "CMakeLists.txt")
    cmake_names = [name.strip() for name in variables["EXTENSION_CONTRIBUTORS"].split(",")]
    assert cmake_names and all(pattern.match(name) for name in cmake_names), cmake_names
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    module_names = next(
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and ast.unparse(node.targets[0]) == "self.parent.contributors"
    )
    assert module_names == cmake_names


def test_sample_checksums_are_written_in_the_module_not_computed_at_startup():
    import hashlib

    source = MODULE_FILE.read_text(encoding="utf-8")
    tree = ast.parse(source)
    register = next(
        ast.get_source_segment(source, node)
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == "registerSampleData"
    )
    assert "file_sha256" not in register and "hashlib" not in register
    checksums = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "SAMPLE_SHA256"
    )
    folder = REPOSITORY / "EoFormerSegmentation" / "Resources" / "SampleData"
    shipped = sorted(p.name for p in folder.glob("*.nrrd"))
    assert sorted(checksums) == shipped
    for name, digest in checksums.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
