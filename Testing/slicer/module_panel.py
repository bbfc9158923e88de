"""Build the module panel outside Slicer (stand-in ``slicer``, PySide6 widgets) and render it.

Used by the widget tests and to refresh the screenshot in the README::

    QT_QPA_PLATFORM=offscreen python Testing/slicer/module_panel.py

which loads the sample case into the stand-in scene, opens the module (so the four inputs are
picked from the volume names), expands the Advanced section and saves
``EoFormerSegmentation/Resources/Screenshots/module_panel.png``.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parents[1]
SCREENSHOT = REPOSITORY / "EoFormerSegmentation" / "Resources" / "Screenshots" / "module_panel.png"
PANEL_WIDTH = 440


def prepare_imports() -> None:
    """Put the stand-in and the module folder first on ``sys.path`` (as conftest.py does)."""
    for path in (str(REPOSITORY / "EoFormerSegmentation"), str(HERE / "standin")):
        if path not in sys.path:
            sys.path.insert(0, path)


def open_module_panel(module):
    """Create the module widget in a panel-sized parent, set it up and enter it.

    Returns:
        (widget, parent): the module's ``EoFormerSegmentationWidget`` and its parent QWidget
        (``parent.isEntered`` is True, as for the module shown in Slicer).
    """
    import slicer
    from PySide6.QtWidgets import QVBoxLayout, QWidget

    slicer.modules.eoformersegmentation = types.SimpleNamespace(path=module.__file__)
    parent = QWidget()
    parent.setLayout(QVBoxLayout())
    parent.isEntered = True
    parent.setFixedWidth(PANEL_WIDTH)
    widget = module.EoFormerSegmentationWidget(parent)
    widget.setup()
    widget.enter()
    return widget, parent


def render(parent, path: Path) -> Path:
    """Lay out ``parent`` at its natural height and save it as a PNG."""
    from PySide6.QtWidgets import QApplication

    parent.adjustSize()
    parent.resize(PANEL_WIDTH, parent.sizeHint().height())
    parent.show()
    for _ in range(5):
        QApplication.processEvents()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not parent.grab().save(str(path)):
        raise RuntimeError(f"cannot write {path}")
    return path


def main() -> None:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="Render the module panel to a PNG.")
    parser.add_argument("--output", type=Path, default=SCREENSHOT)
    parser.add_argument(
        "--segment-with",
        type=Path,
        metavar="CKPT",
        help="run the engine with this model first, so that the results table is filled",
    )
    arguments = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["EOFORMER_HOME"] = tempfile.mkdtemp(prefix="eoformer-screenshot-")
    prepare_imports()
    from PySide6.QtWidgets import QApplication

    application = QApplication.instance() or QApplication([])
    import SampleData

    import EoFormerSegmentation

    EoFormerSegmentation.registerSampleData()
    nodes = SampleData.downloadSamples(EoFormerSegmentation.SAMPLE_NAME)
    widget, parent = open_module_panel(EoFormerSegmentation)
    parameters = widget.logic.getParameterNode()
    if arguments.segment_with:
        parameters.modelPath = str(arguments.segment_with)
        widget.onApplyButton()
        while widget._task is not None:
            application.processEvents()
    parameters.fineTuneSegmentation = nodes[4]
    widget.onAddCase()
    widget.ui.advancedCollapsibleButton.collapsed = False
    widget.ui.fineTuneCollapsibleButton.collapsed = False
    widget.ui.logCollapsibleButton.collapsed = True
    print(render(parent, arguments.output))
    widget.cleanup()


if __name__ == "__main__":
    main()
