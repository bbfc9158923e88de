"""The engine runs with the Python that 3D Slicer has: Slicer's packages, torch and
``Resources/requirements.txt``; nothing that only the test environment has."""

from __future__ import annotations

import json
import subprocess

import numpy as np
from slicer_module_helpers import MODULE_FOLDER
from slicer_python_environment import (
    SLICER_SHIPPED,
    hidden_top_level_modules,
    requirements_of_module,
)

SAMPLE_REFERENCE = MODULE_FOLDER / "Resources" / "SampleData" / "TCGA-FG-6692_reference.seg.nrrd"

READ_SEGMENTATIONS = """
import json, sys
import numpy as np
from EoFormerSegmentationLib.segmentation_file import read_label_map
counts = {}
for path in sys.argv[1:]:
    label, _image = read_label_map(path)
    values, number = np.unique(label, return_counts=True)
    counts[path] = {int(v): int(n) for v, n in zip(values, number)}
print(json.dumps(counts))
"""


def write_single_layer_segmentation(path, label):
    """A ``.seg.nrrd`` as Slicer writes non-overlapping segments: one layer, label values."""
    import nrrd

    header = {
        "type": "unsigned char",
        "dimension": 3,
        "space": "left-posterior-superior",
        "space directions": np.diag([-1.0, -1.0, 2.0]),
        "kinds": ["domain", "domain", "domain"],
        "space origin": np.array([10.0, 20.0, -30.0]),
        "encoding": "gzip",
        "Segmentation_MasterRepresentation": "Binary labelmap",
    }
    for index, (segment_id, name, value) in enumerate(
        [("NCR", "Necrotic tumor core", 1), ("ED", "Edema", 2), ("ET", "Enhancing tumor", 3)]
    ):
        header[f"Segment{index}_ID"] = segment_id
        header[f"Segment{index}_Name"] = name
        header[f"Segment{index}_Layer"] = "0"
        header[f"Segment{index}_LabelValue"] = str(value)
    nrrd.write(str(path), label, header)


def test_slicer_python_hides_what_slicer_lacks():
    hidden = hidden_top_level_modules()
    assert {"slicerio", "pytest", "nilearn"} <= hidden
    assert not {"torch", "monai", "numpy", "SimpleITK", "scipy", "nrrd"} & hidden
    # Slicer's own packages are never reinstalled from the module's requirements
    assert not requirements_of_module() & SLICER_SHIPPED


def test_engine_reads_slicer_segmentations_with_the_packages_slicer_has(python_slicer, tmp_path):
    """Fine-tuning reads the saved cases' .seg.nrrd files in Slicer's Python (no slicerio)."""
    label = np.zeros((6, 5, 4), np.uint8)  # [i, j, k] as pynrrd writes it
    label[1:3, 1:3, 1] = 1
    label[3:5, 1:4, 1:3] = 2
    label[2, 2, 2] = 3
    single_layer = tmp_path / "corrected.seg.nrrd"
    write_single_layer_segmentation(single_layer, label)

    completed = subprocess.run(
        [str(python_slicer), "-c", READ_SEGMENTATIONS, str(SAMPLE_REFERENCE), str(single_layer)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(MODULE_FOLDER), "PATH": "/usr/bin:/bin"},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    counts = json.loads(completed.stdout.strip().splitlines()[-1])
    # the sample's reference (WT, TC, ET layers): BraTS labels with its known volumes in voxels
    assert counts[str(SAMPLE_REFERENCE)] == {
        "0": 3463871,
        "1": 2477,
        "2": 20862,
        "4": 6840,
    }
    # sub-regions in one layer: each voxel keeps the label the user painted (ET 3 -> 4)
    assert counts[str(single_layer)] == {"0": 120 - 4 - 12 - 1, "1": 4, "2": 12, "4": 1}
