"""Helpers shared by the Slicer module tests (event loop, scene listing, sample case)."""

from __future__ import annotations

import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STANDIN = HERE / "standin"
REPOSITORY = HERE.parents[1]
MODULE_FOLDER = REPOSITORY / "EoFormerSegmentation"
MODULE_FILE = MODULE_FOLDER / "EoFormerSegmentation.py"
UI_FILE = MODULE_FOLDER / "Resources" / "UI" / "EoFormerSegmentation.ui"

TINY_MODEL_CONFIG = {
    "encoder_dims": [4, 8, 16, 32],
    "decoder_dims": [16, 8, 4],
    "head_channels": 2,
}
"""About 0.1 M parameters: the engine runs a whole real case in seconds on two CPU cores."""


def process_events(rounds: int = 3) -> None:
    """Let Qt deliver queued events and zero-delay timers."""
    from PySide6.QtWidgets import QApplication

    for _ in range(rounds):
        QApplication.processEvents()


def pump_until(condition, timeout_seconds: float = 240.0) -> None:
    """Run the Qt event loop (which drives the engine's polling timer) until ``condition()``."""
    from PySide6.QtWidgets import QApplication

    deadline = time.monotonic() + timeout_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the engine did not finish in time")
        QApplication.processEvents()
        time.sleep(0.02)


def scene_nodes() -> list:
    """The nodes of the scene, in order."""
    import slicer

    return [
        slicer.mrmlScene.GetNthNode(index) for index in range(slicer.mrmlScene.GetNumberOfNodes())
    ]


def load_sample() -> list:
    """Load the module's sample case: four volumes, then the reference segmentation."""
    import SampleData

    import EoFormerSegmentation

    EoFormerSegmentation.registerSampleData()
    return SampleData.downloadSamples(EoFormerSegmentation.SAMPLE_NAME)


def finetune_arguments() -> list:
    """``eoformer finetune`` options that keep a test run to seconds on two cores."""
    return ["--replay", "none", "--crop", "32", "--patience", "0", "--seed", "0"]


def living_processes_in_group(group_id: int) -> list:
    """PIDs of processes of a process group that are still running (not zombies), from /proc.

    Zombies are dead: they only wait for their parent (for orphans, PID 1) to collect them.
    """
    living = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, process_group = fields[0], int(fields[2])
        if process_group == group_id and state != "Z":
            living.append(int(stat_file.parent.name))
    return living


def load_case_volumes(folder: Path, names: dict) -> dict:
    """Load the four sequences of a case folder into the scene as volumes named ``names[role]``."""
    import slicer

    volumes = {}
    for role, fileName in (("t1", "t1"), ("t1ce", "t1ce"), ("t2", "t2"), ("flair", "flair")):
        path = next(
            p
            for p in folder.iterdir()
            if p.name.split(".")[0].lower().endswith(fileName) and "seg" not in p.name
        )
        volumes[role] = slicer.util.loadVolume(str(path), {"name": names[role]})
    return volumes
