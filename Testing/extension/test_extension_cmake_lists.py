"""The CMake lists install every file the module needs, and only files that exist."""

import shutil
from pathlib import Path

from module_file_lists import (
    MODULE_DIR_NAME,
    REPOSITORY,
    cmake_variables,
    describe_differences,
    list_differences,
    module_lists,
    read_cmake_commands,
    runtime_files,
    update_module_lists,
)


def test_module_lists_name_every_runtime_file_and_nothing_else():
    differences = list_differences(REPOSITORY)
    assert not any(differences.values()), describe_differences(differences)


def test_module_is_built_from_its_own_folder_with_its_script_and_self_test():
    lists = module_lists(REPOSITORY)
    assert lists["name"] == MODULE_DIR_NAME
    assert f"{MODULE_DIR_NAME}.py" in lists["scripts"]
    assert f"{MODULE_DIR_NAME}Lib/__init__.py" in lists["scripts"]
    assert f"Resources/Icons/{MODULE_DIR_NAME}.png" in lists["resources"]
    assert lists["unittest_scripts"] == [f"{MODULE_DIR_NAME}.py"]
    # Every Python file Slicer byte-compiles must be Python; resources are copied as they are.
    assert all(script.endswith(".py") for script in lists["scripts"])


def test_top_level_list_follows_the_extension_template(slicer_templates):
    commands = read_cmake_commands(REPOSITORY / "CMakeLists.txt")
    calls = [(command.name, tuple(command.arguments)) for command in commands]

    assert commands[0].name == "cmake_minimum_required"
    assert ("project", ("EoFormer",)) in calls
    assert ("find_package", ("Slicer", "REQUIRED")) in calls
    assert ("add_subdirectory", (MODULE_DIR_NAME,)) in calls
    # Slicer's macros exist only after its use file; the CPack step comes last.
    raw_text = (REPOSITORY / "CMakeLists.txt").read_text(encoding="utf-8")
    positions = [
        raw_text.index(marker)
        for marker in (
            "find_package(Slicer",
            "include(${Slicer_USE_FILE})",
            f"add_subdirectory({MODULE_DIR_NAME})",
            "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
            "include(${Slicer_EXTENSION_CPACK})",
        )
    ]
    assert positions == sorted(positions)

    variables = cmake_variables(REPOSITORY / "CMakeLists.txt")
    for name in slicer_templates["extension_cmake_variables_in_template"] + ["EXTENSION_CATEGORY"]:
        assert variables.get(name), f"{name} is not set in CMakeLists.txt"
    unknown = {name for name in variables if name.startswith("EXTENSION_")} - set(
        slicer_templates["extension_cmake_variables_recognised"]["names"]
    )
    assert not unknown, f"Slicer does not read these variables: {sorted(unknown)}"
    assert variables["EXTENSION_CATEGORY"] == "Segmentation"
    assert variables["EXTENSION_DEPENDS"] == "PyTorch"


def _make_module(root: Path) -> Path:
    """A small module folder with the repository's CMake list, for the file finder and updater."""
    module = root / MODULE_DIR_NAME
    package = module / f"{MODULE_DIR_NAME}Lib"
    for relative in [
        f"{MODULE_DIR_NAME}.py",
        f"{MODULE_DIR_NAME}Lib/__init__.py",
        f"{MODULE_DIR_NAME}Lib/io/reading.py",
        f"{MODULE_DIR_NAME}Lib/terminology.json",
        "Resources/UI/Panel.ui",
        "Resources/Models/model.pt",
        # never installed:
        f"{MODULE_DIR_NAME}Lib/__pycache__/reading.cpython-312.pyc",
        f"{MODULE_DIR_NAME}Lib/test_reading.py",
        "Testing/Python/module_test.py",
        "Resources/.DS_Store",
        "Resources/UI/Panel.ui~",
    ]:
        (module / relative).parent.mkdir(parents=True, exist_ok=True)
        (module / relative).write_text("x", encoding="utf-8")
    (package.parent / "eoformer_segmentation.egg-info").mkdir()
    (package.parent / "eoformer_segmentation.egg-info" / "top_level.txt").write_text("x")
    shutil.copy(REPOSITORY / MODULE_DIR_NAME / "CMakeLists.txt", module / "CMakeLists.txt")
    return module


def test_runtime_files_are_scripts_resources_and_package_data_without_caches_or_tests(tmp_path):
    _make_module(tmp_path)
    assert runtime_files(tmp_path) == {
        "scripts": [
            f"{MODULE_DIR_NAME}.py",
            f"{MODULE_DIR_NAME}Lib/__init__.py",
            f"{MODULE_DIR_NAME}Lib/io/reading.py",
        ],
        "resources": [
            f"{MODULE_DIR_NAME}Lib/terminology.json",
            "Resources/Models/model.pt",
            "Resources/UI/Panel.ui",
        ],
    }


def test_a_new_file_fails_the_check_until_the_lists_are_updated(tmp_path):
    module = _make_module(tmp_path)
    update_module_lists(tmp_path)
    assert not any(list_differences(tmp_path).values())

    (module / f"{MODULE_DIR_NAME}Lib" / "metrics.py").write_text("x", encoding="utf-8")
    (module / "Resources" / "UI" / "Panel.ui").unlink()
    differences = list_differences(tmp_path)
    assert differences["missing_scripts"] == [f"{MODULE_DIR_NAME}Lib/metrics.py"]
    assert differences["nonexistent"] == ["Resources/UI/Panel.ui"]
    message = describe_differences(differences)
    assert f"{MODULE_DIR_NAME}Lib/metrics.py" in message and "--update" in message

    assert update_module_lists(tmp_path) is True
    assert not any(list_differences(tmp_path).values())
    listed = module_lists(tmp_path)
    assert listed["scripts"] == sorted(listed["scripts"])
    assert listed["resources"] == sorted(listed["resources"])
    assert update_module_lists(tmp_path) is False


def test_cmake_reader_handles_quotes_comments_and_variables(tmp_path):
    cmake_list = tmp_path / "CMakeLists.txt"
    cmake_list.write_text(
        "# a comment with set(IGNORED x)\n"
        "set(NAME Demo)\n"
        'set(TEXT "Segments (WT, TC) # not a comment" ) # a comment\n'
        "set(FILES\n  ${NAME}.py  # the module\n  ${NAME}Lib/a.py\n  )\n"
        "demo_macro(NAME ${NAME} SCRIPTS ${FILES} EXTRA $<IF:$<BOOL:1>,(a),b>)\n",
        encoding="utf-8",
    )
    commands = read_cmake_commands(cmake_list)
    assert [command.name for command in commands] == ["set", "set", "set", "demo_macro"]
    assert commands[1].arguments == ["TEXT", "Segments (WT, TC) # not a comment"]
    assert commands[3].arguments == [
        "NAME",
        "Demo",
        "SCRIPTS",
        "Demo.py",
        "DemoLib/a.py",
        "EXTRA",
        "$<IF:$<BOOL:1>,(a),b>",
    ]
