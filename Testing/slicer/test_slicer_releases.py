"""The module runs on every supported Slicer release (5.8, 5.10, 5.12) and its self-test passes
on a build machine without PyTorch.

A name used without a version guard must exist in every release; a name used under
``if slicerVersionAtLeast(major, minor):`` in that release and the later ones. Checked against
``../shared/slicer-api/manifest-<release>.json``.
"""

from __future__ import annotations

import ast
import json
import time
from functools import cache
from pathlib import Path

import pytest
import slicer_api_manifest
import test_slicer_manifest
import vtk
from slicer_module_helpers import MODULE_FILE

RELEASES = ((5, 8), (5, 10), (5, 12))
MANIFEST_FOLDER = slicer_api_manifest.MANIFEST_PATH.parent


@cache
def release_manifest(release):
    path = MANIFEST_FOLDER / "manifest-{}.{}.json".format(*release)
    return json.loads(path.read_text(encoding="utf-8"))


def guarded_lines(tree):
    """Line number -> the release named by the innermost ``slicerVersionAtLeast`` guard."""
    guards = {}

    def visit(node, release):
        if isinstance(node, ast.If):
            test = node.test
            if (
                isinstance(test, ast.Call)
                and isinstance(test.func, ast.Name)
                and test.func.id == "slicerVersionAtLeast"
            ):
                guarded = tuple(argument.value for argument in test.args)
                for child in node.body:
                    visit(child, max(release, guarded))
                for child in node.orelse:
                    visit(child, release)
                return
        for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
            guards[line] = max(guards.get(line, (5, 8)), release)
        for child in ast.iter_child_nodes(node):
            if hasattr(child, "lineno"):
                visit(child, release)

    for statement in tree.body:
        visit(statement, (5, 8))
    return guards


def problems_in_release(source, release, monkeypatch):
    """Names of ``source`` that ``release`` lacks although the code may run there."""
    manifest = release_manifest(release)
    monkeypatch.setattr(slicer_api_manifest, "manifest", lambda: manifest)
    monkeypatch.setattr(test_slicer_manifest, "manifest", lambda: manifest)
    tree = ast.parse(source)
    guards = guarded_lines(tree)
    scan = test_slicer_manifest.ModuleScan()
    scan.visit(tree)
    problems = []
    for chain, line in scan.references:
        if guards.get(line, (5, 8)) > release:
            continue
        problem = test_slicer_manifest.reference_problem(chain)
        if problem:
            problems.append(f"line {line}: {problem}")
    for receiver_type, method, line, receiver in scan.method_calls:
        if guards.get(line, (5, 8)) > release:
            continue
        if receiver_type and receiver_type.startswith("vtk."):
            ok = hasattr(getattr(vtk, receiver_type[4:]), method)
        elif receiver_type in slicer_api_manifest.mrml_classes():
            ok = method in slicer_api_manifest.mrml_names(receiver_type)
        elif receiver_type is None:
            ok = method in slicer_api_manifest.all_mrml_names() or hasattr(vtk.vtkObject, method)
        else:
            continue
        if not ok:
            problems.append(f"line {line}: {receiver}.{method}() ({receiver_type or 'untyped'})")
    return problems


@pytest.mark.parametrize("release", RELEASES, ids=lambda r: "Slicer {}.{}".format(*r))
def test_module_uses_only_names_of_each_release_it_may_run_on(release, monkeypatch):
    source = MODULE_FILE.read_text(encoding="utf-8")
    problems = problems_in_release(source, release, monkeypatch)
    assert not problems, "Slicer {}.{} lacks:\n".format(*release) + "\n".join(problems)


def test_the_release_check_sees_an_unguarded_newer_name(monkeypatch):
    unguarded = (
        "import slicer\n"
        "import slicer.packaging as slicerPackaging\n"
        "def f(segment: slicer.vtkSegment):\n"
        "    segment.SetTerminology('x')\n"
        "    slicerPackaging.pip_ensure([])\n"
    )
    problems = problems_in_release(unguarded, (5, 8), monkeypatch)
    assert any("SetTerminology" in p for p in problems)
    assert any("packaging" in p for p in problems)
    guarded = unguarded.replace(
        "    segment.SetTerminology('x')\n    slicerPackaging.pip_ensure([])\n",
        "    if slicerVersionAtLeast(5, 12):\n"
        "        segment.SetTerminology('x')\n"
        "        slicerPackaging.pip_ensure([])\n",
    )
    assert problems_in_release(guarded, (5, 8), monkeypatch) == []


def test_self_test_passes_without_pytorch_in_seconds(module, scene, eoformer_home, monkeypatch):
    """On an extension build machine (no torch, no MONAI) the registered self-test checks the
    panel, the sample data and the label-map round trip, and skips the engine."""
    import slicer

    monkeypatch.delenv("EOFORMER_SELFTEST_ENGINE", raising=False)
    monkeypatch.setattr(
        module.EoFormerSegmentationLogic,
        "missingDependencies",
        lambda self, path=None: ["torch is not installed", "monai is not installed"],
    )

    def no_engine(*args, **kwargs):
        raise AssertionError("the engine must not run without its packages")

    monkeypatch.setattr(module.EoFormerSegmentationLogic, "startSegmentation", no_engine)
    started = time.monotonic()
    test = module.EoFormerSegmentationTest()
    test.runTest()
    assert time.monotonic() - started < 30
    shown = [text for kind, text, _options in slicer.util._messages if kind == "delay"]
    assert "Test passed: label map round trip" in shown
    assert any("Engine test skipped" in text for text in shown)


def test_self_test_runs_the_engine_when_asked(module, scene, eoformer_home, monkeypatch):
    ran = []
    monkeypatch.setenv("EOFORMER_SELFTEST_ENGINE", "1")
    monkeypatch.setattr(
        module.EoFormerSegmentationTest, "test_SegmentSampleCase", lambda self: ran.append(1)
    )
    module.EoFormerSegmentationTest().runTest()
    assert ran == [1]


def test_registered_self_test_is_the_module_test(module):
    cmake = (Path(module.__file__).parent / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in cmake
