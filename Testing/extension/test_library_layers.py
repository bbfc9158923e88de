"""The library's layers: the engine never imports from the command line above it."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[2] / "EoFormerSegmentation" / "EoFormerSegmentationLib"


def imported_modules(path: Path):
    """Absolute names of every module a file imports, at any depth (lazy imports included)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno


def test_engine_modules_do_not_import_the_command_line():
    problems = []
    for path in sorted(LIBRARY.rglob("*.py")):
        relative = path.relative_to(LIBRARY)
        if relative.parts[0] == "cli" or relative.name == "__main__.py":
            continue
        for module, line in imported_modules(path):
            if module.startswith("EoFormerSegmentationLib.cli"):
                problems.append(f"{relative}:{line} imports {module}")
    assert not problems, "\n".join(problems)


def test_evaluate_command_and_cohort_evaluation_share_the_engine_reader():
    from EoFormerSegmentationLib import evaluation, segmentation_file
    from EoFormerSegmentationLib.cli import evaluate

    assert evaluate.read_label_map is segmentation_file.read_label_map
    source = Path(evaluation.__file__).read_text(encoding="utf-8")
    assert "segmentation_file import read_label_map" in source
