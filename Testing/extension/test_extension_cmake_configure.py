"""CMake itself reads both CMake lists, with Slicer's macros replaced by recording stubs."""

import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest
from module_file_lists import MODULE_DIR_NAME, REPOSITORY, cmake_variables, module_lists

STUBS = Path(__file__).resolve().parent / "configure_with_slicer_stubs.cmake"


def configure_with_stubs(
    source_dir: Path, record_dir: Path, templates: Dict[str, Any]
) -> Dict[str, List[str]]:
    """Run ``cmake -P`` on the stub script for ``source_dir``; return the recorded values.

    The macro keywords and EXTENSION_* variables come from the Slicer API manifest, so a
    keyword that Slicer does not accept fails here as it would in a Slicer build.
    """
    cmake = shutil.which("cmake")
    assert cmake, "cmake is not installed (apt-get install cmake); it checks the CMake lists"
    build_macro = templates["cmake_macros"]["slicerMacroBuildScriptedModule"]
    unittest_macro = templates["cmake_macros"]["slicer_add_python_unittest"]
    definitions = {
        "EXTENSION_SOURCE_DIR": str(source_dir),
        "RECORD_FILE": str(record_dir / "record.txt"),
        "BUILD_SCRIPTED_MODULE_OPTIONS": build_macro["options"],
        "BUILD_SCRIPTED_MODULE_ONE_VALUE": build_macro["oneValueArgs"],
        "BUILD_SCRIPTED_MODULE_MULTI_VALUE": build_macro["multiValueArgs"],
        "PYTHON_UNITTEST_ONE_VALUE": unittest_macro["oneValueArgs"],
        "PYTHON_UNITTEST_MULTI_VALUE": unittest_macro["multiValueArgs"],
        "RECORDED_EXTENSION_VARIABLES": templates["extension_cmake_variables_recognised"]["names"],
    }
    arguments = [cmake]
    for name, value in definitions.items():
        arguments.append(f"-D{name}={';'.join(value) if isinstance(value, list) else value}")
    arguments += ["-P", str(STUBS)]
    completed = subprocess.run(arguments, capture_output=True, text=True, timeout=60)
    if completed.returncode != 0:
        raise RuntimeError(f"cmake failed:\n{completed.stdout}\n{completed.stderr}")
    record: Dict[str, List[str]] = {}
    for line in (record_dir / "record.txt").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        record.setdefault(key, []).append(value)
    return record


def test_cmake_configures_the_extension_with_its_module(tmp_path, slicer_templates):
    record = configure_with_stubs(REPOSITORY, tmp_path, slicer_templates)
    assert record["done"] == ["TRUE"]
    assert record["project"] == ["EoFormer"]
    assert record["find_package"] == ["Slicer"]
    assert record["include"] == [
        "Slicer_USE_FILE",
        "Slicer_EXTENSION_GENERATE_CONFIG",
        "Slicer_EXTENSION_CPACK",
    ]
    assert record["add_subdirectory"] == [MODULE_DIR_NAME]
    assert record["module.name"] == [MODULE_DIR_NAME]
    assert record["module.dir"] == [MODULE_DIR_NAME]
    assert record["unittest.script"] == [f"{MODULE_DIR_NAME}/{MODULE_DIR_NAME}.py"]

    # CMake reads the same lists as the Python reader used by the file-list test.
    lists = module_lists(REPOSITORY)
    assert record["module.scripts"][0].split(";") == lists["scripts"]
    assert [r for r in record["module.resources"][0].split(";") if r] == lists["resources"]

    variables = cmake_variables(REPOSITORY / "CMakeLists.txt")
    for name, value in variables.items():
        if name.startswith("EXTENSION_"):
            assert record[name] == [value], name


@pytest.mark.parametrize(
    "original,broken,error",
    [
        (
            "SCRIPTS ${MODULE_PYTHON_SCRIPTS}",
            "SCRIPT ${MODULE_PYTHON_SCRIPTS}",
            "unknown arguments",
        ),
        (
            "slicerMacroBuildScriptedModule(",
            "slicerMacroBuildScriptedModul(",
            "Unknown CMake command",
        ),
        ("  WITH_GENERIC_TESTS\n  )", "  WITH_GENERIC_TESTS\n", "Parse error"),
        ("NAME ${MODULE_NAME}", "NAME ${MODULE_NAM}", "NAME is empty"),
    ],
    ids=["wrong keyword", "misspelled macro", "missing parenthesis", "misspelled variable"],
)
def test_a_broken_module_list_fails_the_check(tmp_path, slicer_templates, original, broken, error):
    source = tmp_path / "source"
    (source / MODULE_DIR_NAME).mkdir(parents=True)
    shutil.copy(REPOSITORY / "CMakeLists.txt", source / "CMakeLists.txt")
    module_list = source / MODULE_DIR_NAME / "CMakeLists.txt"
    text = (REPOSITORY / MODULE_DIR_NAME / "CMakeLists.txt").read_text(encoding="utf-8")
    assert original in text
    module_list.write_text(text.replace(original, broken, 1), encoding="utf-8")
    with pytest.raises(RuntimeError, match=error):
        configure_with_stubs(source, tmp_path, slicer_templates)
