"""The files that the Slicer extension installs, as the CMake lists name them and as they are on disk.

A Slicer scripted module is installed from ``EoFormerSegmentation/CMakeLists.txt``: the
``SCRIPTS`` of ``slicerMacroBuildScriptedModule`` are the Python files that Slicer byte-compiles
and installs, its ``RESOURCES`` every other file copied beside them. A file missing there
works in a source checkout and is absent from the installed extension, so this module finds
every file that the module needs at run time and compares it with the lists.

Run as a script to see or fix the difference::

    python Testing/extension/module_file_lists.py            # print what is missing or stale
    python Testing/extension/module_file_lists.py --update   # rewrite both lists, sorted
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, NamedTuple, Set, Tuple

__all__ = [
    "MODULE_DIR_NAME",
    "REPOSITORY",
    "CMakeCommand",
    "read_cmake_commands",
    "cmake_variables",
    "module_lists",
    "runtime_files",
    "list_differences",
    "describe_differences",
    "format_cmake_list",
    "update_module_lists",
    "main",
]

REPOSITORY = Path(__file__).resolve().parents[2]
MODULE_DIR_NAME = "EoFormerSegmentation"

# Folders and files that are never part of the installed module: caches, build products, tests.
_EXCLUDED_DIR_NAMES = {"__pycache__", "Testing", "tests", "build", "dist"}
_EXCLUDED_DIR_SUFFIXES = (".egg-info",)
_EXCLUDED_FILE_SUFFIXES = (".pyc", ".pyo", ".orig", ".rej", ".swp", "~")
_TEST_FILE_PATTERN = re.compile(r"^(test_.*|.*_test|conftest)\.py$")

_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VARIABLE_PATTERN = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


class CMakeCommand(NamedTuple):
    """One command of a CMake list.

    Args:
        name: the command's name in lower case (CMake command names ignore case).
        arguments: its arguments, quotes removed and ``${VAR}`` expanded.
    """

    name: str
    arguments: List[str]


def _skip_comment(text: str, position: int) -> int:
    """Position of the end of the ``#`` line comment that starts at ``position``."""
    newline = text.find("\n", position)
    return len(text) if newline < 0 else newline


def _read_quoted(text: str, position: int) -> Tuple[str, int]:
    """The value of the quoted argument that opens at ``position``, and the position after it."""
    value: List[str] = []
    position += 1
    while position < len(text) and text[position] != '"':
        if text[position] == "\\" and position + 1 < len(text):
            value.append(text[position + 1])
            position += 2
        else:
            value.append(text[position])
            position += 1
    return "".join(value), position + 1


def _read_arguments(text: str, position: int) -> Tuple[List[Tuple[str, bool]], int]:
    """Arguments of the command whose ``(`` is just before ``position``, and the position after ``)``.

    Returns ``[(argument, was_quoted), ...]``; unquoted arguments may hold nested parentheses.
    """
    arguments: List[Tuple[str, bool]] = []
    current: List[str] = []
    depth = 0
    while position < len(text):
        character = text[position]
        ends_argument = character.isspace() or character in '"#' or (character == ")" and not depth)
        if ends_argument and current:
            arguments.append(("".join(current), False))
            current = []
        if character == '"':
            value, position = _read_quoted(text, position)
            arguments.append((value, True))
            continue
        if character == "#":
            position = _skip_comment(text, position)
            continue
        if character == ")" and not depth:
            return arguments, position + 1
        depth += {"(": 1, ")": -1}.get(character, 0)
        if not character.isspace():
            current.append(character)
        position += 1
    raise ValueError("unbalanced parentheses: a command is not closed")


def _tokenize_commands(text: str) -> Iterator[Tuple[str, List[Tuple[str, bool]]]]:
    """Split CMake text into commands: ``(name, [(argument, was_quoted), ...])``.

    Handles ``#`` line comments, quoted arguments (with ``\\`` escapes, parentheses and ``#``
    inside) and nested parentheses in unquoted arguments; bracket arguments are not used here.
    """
    position = 0
    while position < len(text):
        if text[position] == "#":
            position = _skip_comment(text, position)
            continue
        name_match = _NAME_PATTERN.match(text, position)
        if not name_match:
            position += 1
            continue
        position = name_match.end()
        while position < len(text) and text[position] in " \t":
            position += 1
        if position < len(text) and text[position] == "(":
            arguments, position = _read_arguments(text, position + 1)
            yield name_match.group(0), arguments


def read_cmake_commands(path: Path, variables: Dict[str, str] | None = None) -> List[CMakeCommand]:
    """Read the commands of a CMake list, expanding variables set earlier with ``set()``.

    This reads the plain form used by Slicer's extension and scripted-module templates
    (commands, quoted and unquoted arguments, comments; no control flow is evaluated);
    ``cmake -P`` checks the same files for real.

    Args:
        path: the ``CMakeLists.txt`` to read.
        variables: variables already defined (updated in place with every ``set()`` seen).

    Returns:
        The commands in file order, names in lower case, arguments with ``${VAR}`` expanded
        (unknown variables expand to an empty string, as in CMake) and quotes removed.
        An unquoted argument holding a list is split at ``;`` as CMake does.
    """
    variables = {} if variables is None else variables
    commands: List[CMakeCommand] = []
    for name, raw_arguments in _tokenize_commands(path.read_text(encoding="utf-8")):
        arguments: List[str] = []
        for raw, quoted in raw_arguments:
            value = _VARIABLE_PATTERN.sub(lambda m: variables.get(m.group(1), ""), raw)
            if quoted:
                arguments.append(value)
            else:
                arguments.extend(part for part in value.split(";") if part)
        if name.lower() == "set" and arguments:
            variables[arguments[0]] = ";".join(arguments[1:])
        commands.append(CMakeCommand(name.lower(), arguments))
    return commands


def cmake_variables(path: Path) -> Dict[str, str]:
    """Every variable that a CMake list sets with ``set()``, lists joined with ``;``."""
    variables: Dict[str, str] = {}
    read_cmake_commands(path, variables)
    return variables


def _keyword_values(arguments: List[str], keyword: str, keywords: Iterable[str]) -> List[str]:
    """Values that follow ``keyword`` up to the next keyword, as ``cmake_parse_arguments`` does."""
    keywords = set(keywords)
    values: List[str] = []
    collecting = False
    for argument in arguments:
        if argument in keywords:
            collecting = argument == keyword
        elif collecting:
            values.append(argument)
    return values


def module_lists(repository: Path = REPOSITORY) -> Dict[str, object]:
    """What ``EoFormerSegmentation/CMakeLists.txt`` gives ``slicerMacroBuildScriptedModule``.

    Args:
        repository: the repository's top folder.

    Returns:
        ``{"name": str, "scripts": [...], "resources": [...], "unittest_scripts": [...]}`` with
        paths relative to the module folder, in the order listed.
    """
    keywords = ("NAME", "SCRIPTS", "RESOURCES", "WITH_GENERIC_TESTS", "WITH_SUBDIR", "VERBOSE")
    result: Dict[str, object] = {
        "name": None,
        "scripts": [],
        "resources": [],
        "unittest_scripts": [],
    }
    for command in read_cmake_commands(repository / MODULE_DIR_NAME / "CMakeLists.txt"):
        if command.name == "slicermacrobuildscriptedmodule":
            names = _keyword_values(command.arguments, "NAME", keywords)
            result["name"] = names[0] if names else None
            result["scripts"] = _keyword_values(command.arguments, "SCRIPTS", keywords)
            result["resources"] = _keyword_values(command.arguments, "RESOURCES", keywords)
        elif command.name == "slicer_add_python_unittest":
            unittest_keywords = ("SCRIPT", "TESTNAME_PREFIX", "SLICER_ARGS")
            result["unittest_scripts"].extend(
                _keyword_values(command.arguments, "SCRIPT", unittest_keywords)
            )
    return result


def _git_ignored(paths: List[Path], repository: Path) -> Set[Path]:
    """The subset of ``paths`` that git ignores (empty when git or the repository is absent)."""
    if not paths:
        return set()
    try:
        completed = subprocess.run(
            ["git", "-C", str(repository), "check-ignore", "--stdin"],
            input="\n".join(str(path.relative_to(repository)) for path in paths),
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return set()
    if completed.returncode not in (0, 1):  # 1: nothing ignored; 128: not a repository
        return set()
    return {repository / line for line in completed.stdout.splitlines() if line}


def runtime_files(repository: Path = REPOSITORY) -> Dict[str, List[str]]:
    """The files of the module folder that the installed extension needs, found on disk.

    Scripts: every ``.py`` under ``EoFormerSegmentation/`` outside ``Resources/`` (the module
    and its ``EoFormerSegmentationLib`` package, recursively) except tests. Resources: every
    file under ``Resources/`` and every non-Python file inside the package (package data).
    Caches, build products, editor leftovers, hidden files and git-ignored files are left out.

    Args:
        repository: the repository's top folder.

    Returns:
        ``{"scripts": [...], "resources": [...]}``, sorted paths relative to the module folder
        with ``/`` separators.
    """
    module_dir = repository / MODULE_DIR_NAME
    candidates: List[Path] = []
    for path in sorted(module_dir.rglob("*")):
        relative_parts = path.relative_to(module_dir).parts
        if not path.is_file() or any(part.startswith(".") for part in relative_parts):
            continue
        folders = relative_parts[:-1]
        if any(
            folder in _EXCLUDED_DIR_NAMES or folder.endswith(_EXCLUDED_DIR_SUFFIXES)
            for folder in folders
        ):
            continue
        if path.name.endswith(_EXCLUDED_FILE_SUFFIXES):
            continue
        candidates.append(path)
    ignored = _git_ignored(candidates, repository)

    scripts: List[str] = []
    resources: List[str] = []
    for path in candidates:
        if path in ignored:
            continue
        relative = path.relative_to(module_dir)
        relative_text = relative.as_posix()
        in_resources = relative.parts[0] == "Resources"
        in_package = relative.parts[0] == f"{MODULE_DIR_NAME}Lib"
        if path.suffix == ".py" and not in_resources:
            if not _TEST_FILE_PATTERN.match(path.name):
                scripts.append(relative_text)
        elif in_resources or in_package:
            resources.append(relative_text)
    return {"scripts": sorted(scripts), "resources": sorted(resources)}


def list_differences(repository: Path = REPOSITORY) -> Dict[str, List[str]]:
    """Where the CMake lists and the files on disk disagree.

    Returns:
        ``missing_scripts`` / ``missing_resources``: needed at run time but not listed;
        ``nonexistent``: listed as a script or resource but not on disk;
        ``duplicates``: listed more than once;
        ``missing_self_test``: the ``slicer_add_python_unittest`` script is not on disk.
    """
    listed = module_lists(repository)
    found = runtime_files(repository)
    module_dir = repository / MODULE_DIR_NAME
    all_listed = list(listed["scripts"]) + list(listed["resources"])
    return {
        "missing_scripts": [f for f in found["scripts"] if f not in listed["scripts"]],
        "missing_resources": [f for f in found["resources"] if f not in listed["resources"]],
        "nonexistent": [f for f in all_listed if not (module_dir / f).is_file()],
        "duplicates": sorted({f for f in all_listed if all_listed.count(f) > 1}),
        "missing_self_test": [
            f for f in listed["unittest_scripts"] if not (module_dir / f).is_file()
        ],
    }


def format_cmake_list(variable: str, files: Iterable[str]) -> str:
    """The ``set(<variable> ...)`` block of a CMake list, one file a line, as the lists use it."""
    lines = [f"set({variable}"] + [f"  {file}" for file in files] + ["  )"]
    return "\n".join(lines)


def update_module_lists(repository: Path = REPOSITORY) -> bool:
    """Rewrite ``MODULE_PYTHON_SCRIPTS`` and ``MODULE_PYTHON_RESOURCES`` from the files on disk.

    Args:
        repository: the repository's top folder.

    Returns:
        True when the file changed.
    """
    cmake_path = repository / MODULE_DIR_NAME / "CMakeLists.txt"
    text = cmake_path.read_text(encoding="utf-8")
    found = runtime_files(repository)
    new_text = text
    for variable, files in (
        ("MODULE_PYTHON_SCRIPTS", found["scripts"]),
        ("MODULE_PYTHON_RESOURCES", found["resources"]),
    ):
        block = re.compile(rf"set\({variable}\b[^()]*\)").search(new_text)
        if not block:
            raise ValueError(f"{cmake_path}: no set({variable} ...) block to update")
        replacement = format_cmake_list(variable, files)
        new_text = new_text[: block.start()] + replacement + new_text[block.end() :]
    if new_text != text:
        cmake_path.write_text(new_text, encoding="utf-8")
    return new_text != text


def describe_differences(differences: Dict[str, List[str]]) -> str:
    """A message listing each disagreement as lines ready to paste into the CMake list."""
    parts = []
    fixable = {
        "missing_scripts": "not listed in MODULE_PYTHON_SCRIPTS",
        "missing_resources": "not listed in MODULE_PYTHON_RESOURCES",
        "nonexistent": "listed but not found on disk",
        "duplicates": "listed more than once",
    }
    for key, heading in fixable.items():
        if differences[key]:
            parts.append(f"{heading}:\n" + "\n".join(f"  {f}" for f in differences[key]))
    if parts:
        parts.append(
            "fix: python Testing/extension/module_file_lists.py --update "
            f"(rewrites the lists in {MODULE_DIR_NAME}/CMakeLists.txt from the files on disk)"
        )
    if differences["missing_self_test"]:
        parts.append(
            "the self-test script given to slicer_add_python_unittest does not exist:\n"
            + "\n".join(f"  {f}" for f in differences["missing_self_test"])
        )
    return "\n".join(parts)


def main(argv: List[str] | None = None) -> int:
    """Print the differences between the module's CMake lists and its files, or fix them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--update", action="store_true", help="rewrite both lists from the files on disk"
    )
    arguments = parser.parse_args(argv)
    if arguments.update:
        changed = update_module_lists()
        print(f"{MODULE_DIR_NAME}/CMakeLists.txt {'updated' if changed else 'already up to date'}")
    message = describe_differences(list_differences())
    print(message or "the CMake lists name every runtime file of the module")
    return 1 if message else 0


if __name__ == "__main__":
    sys.exit(main())
