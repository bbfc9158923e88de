"""BraTS label conventions and the three evaluated tumor regions.

Label maps (one integer per voxel):

=====================  ===========  ===========
meaning                BraTS 2020   BraTS 2023
=====================  ===========  ===========
background             0            0
necrotic / non-enh.    1 (NCR)      1
edema                  2 (ED)       2
enhancing tumor        4 (ET)       3
=====================  ===========  ===========

Regions (overlapping masks, what the network predicts and BraTS evaluates):
WT (whole tumor) = NCR + ED + ET, TC (tumor core) = NCR + ET, ET (enhancing tumor) = ET.

This module is pure numpy so that the 3D Slicer module can import it before PyTorch is
installed.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np

from EoFormerSegmentationLib.errors import InputError

__all__ = [
    "REGIONS",
    "CONVENTIONS",
    "SEGMENTS",
    "SUBREGION_SEGMENTS",
    "TERMINOLOGY_CONTEXT",
    "TERMINOLOGY_FILE_NAME",
    "ET_LABEL",
    "labels_to_regions",
    "regions_to_labels",
    "check_label_values",
    "segment_terminology",
]

REGIONS = ("WT", "TC", "ET")
"""Region ids, in the order of the network's output channels."""

CONVENTIONS = ("brats2020", "brats2023")

ET_LABEL = {"brats2020": 4, "brats2023": 3}
"""Label value of the enhancing tumor in each convention (NCR is 1 and ED is 2 in both)."""

# Slicer terminology string: context~category~type~typeModifier~anatomicContext~region~regionModifier
# Each code is CodingScheme^CodeValue^CodeMeaning. Necrosis, edema and neoplasm are SNOMED CT
# codes; "99EOF" is a private coding scheme (DICOM reserves schemes starting with "99" for
# local codes) for the BraTS region modifiers, which have no standard code. All of them are
# listed in the terminology file that the Slicer module ships and loads at startup
# (TERMINOLOGY_FILE_NAME), so that Slicer's terminology selector shows them.
TERMINOLOGY_CONTEXT = "Segmentation category and type - EoFormer brain tumor"
"""Name of the category-and-type list of the module's terminology file."""
TERMINOLOGY_FILE_NAME = "SegmentationCategoryTypeModifier-EoFormer.term.json"
"""The terminology file, in the Slicer module's ``Resources/`` folder."""
_TERMINOLOGY_CONTEXT = TERMINOLOGY_CONTEXT
_ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
_CATEGORY = ("SCT", "49755003", "Morphologically Altered Structure")
_TYPE = ("SCT", "108369006", "Neoplasm")
_BRAIN = ("SCT", "12738006", "Brain")

SEGMENTS: List[Dict[str, object]] = [
    {
        "id": "WT",
        "name": "Whole tumor",
        "description": "Necrotic core, edema and enhancing tumor (BraTS whole tumor)",
        "color": (0.33, 0.73, 0.33),
        "category": _CATEGORY,
        "type": _TYPE,
        "type_modifier": ("99EOF", "WT", "Whole tumor"),
        "anatomic_region": _BRAIN,
    },
    {
        "id": "TC",
        "name": "Tumor core",
        "description": "Necrotic core and enhancing tumor (BraTS tumor core)",
        "color": (0.95, 0.85, 0.25),
        "category": _CATEGORY,
        "type": _TYPE,
        "type_modifier": ("99EOF", "TC", "Tumor core"),
        "anatomic_region": _BRAIN,
    },
    {
        "id": "ET",
        "name": "Enhancing tumor",
        "description": "Gadolinium-enhancing tumor (BraTS enhancing tumor)",
        "color": (0.90, 0.22, 0.20),
        "category": _CATEGORY,
        "type": _TYPE,
        "type_modifier": ("99EOF", "ET", "Enhancing tumor"),
        "anatomic_region": _BRAIN,
    },
]
"""The three overlapping regions: id, display name, colour (RGB in 0-1) and terminology codes.

They are what BraTS evaluates (Dice, HD95, volumes) and what the engine's ``.seg.nrrd`` holds.
"""

SUBREGION_SEGMENTS: List[Dict[str, object]] = [
    {
        "id": "NCR",
        "name": "Necrotic tumor core",
        "description": "Necrotic and non-enhancing tumor core (BraTS label 1)",
        "label": 1,
        "color": (0.95, 0.85, 0.25),
        "category": _CATEGORY,
        "type": ("SCT", "6574001", "Necrosis"),
        "type_modifier": ("", "", ""),
        "anatomic_region": _BRAIN,
    },
    {
        "id": "ED",
        "name": "Edema",
        "description": "Peritumoral edema and infiltrated tissue (BraTS label 2)",
        "label": 2,
        "color": (0.33, 0.73, 0.33),
        "category": _CATEGORY,
        "type": ("SCT", "79654002", "Edema"),
        "type_modifier": ("", "", ""),
        "anatomic_region": _BRAIN,
    },
    {
        **SEGMENTS[2],
        "description": "Gadolinium-enhancing tumor (BraTS label 4, or 3 in BraTS 2023)",
        "label": 4,
    },
]
"""The three non-overlapping BraTS sub-regions, the segments a user edits in 3D Slicer.

Each voxel belongs to at most one of them, so the Segment Editor's default "overwrite other
segments" keeps them consistent; ``label`` is the BraTS 2020 label value. WT = NCR + ED + ET,
TC = NCR + ET, ET = ET.
"""


def _code(code: tuple) -> str:
    return "^".join(code)


def segment_terminology(segment: Dict[str, object]) -> str:
    """Slicer terminology entry string of one of :data:`SEGMENTS` or :data:`SUBREGION_SEGMENTS`.

    Args:
        segment: an item of :data:`SEGMENTS` or :data:`SUBREGION_SEGMENTS`.

    Returns:
        The ``~``-separated string that Slicer stores in ``Segment<i>_Terminology`` of a
        ``.seg.nrrd`` file and in the ``TerminologyEntry`` tag of a segment.
    """
    return "~".join(
        [
            _TERMINOLOGY_CONTEXT,
            _code(segment["category"]),
            _code(segment["type"]),
            _code(segment["type_modifier"]),
            _ANATOMIC_CONTEXT,
            _code(segment["anatomic_region"]),
            "^^",
        ]
    )


def check_label_values(label: np.ndarray, source: str) -> None:
    """Raise :class:`InputError` unless ``label`` is a valid BraTS label map.

    Args:
        label: integer label map.
        source: the file or case the labels come from, used in the message.

    Raises:
        InputError: values outside {0, 1, 2, 3, 4}, or both 3 and 4 present (two conventions
            mixed).
    """
    values = set(np.unique(label).tolist())
    unexpected = sorted(v for v in values if v not in (0, 1, 2, 3, 4))
    if unexpected:
        shown = ", ".join(f"{v:g}" for v in unexpected[:8])
        raise InputError(
            f"{source}: label values {shown} are not BraTS labels "
            "(expected 0 background, 1 NCR, 2 ED, 4 ET (BraTS 2020) or 3 ET (BraTS 2023))"
        )
    if 3 in values and 4 in values:
        raise InputError(
            f"{source}: the label map contains both 3 and 4; enhancing tumor is 4 in BraTS "
            "2017-2021 and 3 in BraTS 2023, not both"
        )


def labels_to_regions(label: np.ndarray) -> np.ndarray:
    """Overlapping WT / TC / ET masks of a BraTS label map.

    Args:
        label: integer label map of any shape; ET may be 4 (BraTS 2020) or 3 (BraTS 2023).

    Returns:
        Boolean array of shape ``(3, *label.shape)`` in the order of :data:`REGIONS`.
    """
    label = np.asarray(label)
    enhancing = (label == 4) | (label == 3)
    core = enhancing | (label == 1)
    whole = core | (label == 2)
    return np.stack([whole, core, enhancing])


def regions_to_labels(regions: np.ndarray, convention: str = "brats2020") -> np.ndarray:
    """BraTS label map from WT / TC / ET masks.

    The masks are nested first (ET within TC within WT), so that NCR = TC minus ET and
    ED = WT minus TC are well defined.

    Args:
        regions: array of shape ``(3, ...)`` in the order of :data:`REGIONS`, bool or 0/1.
        convention: ``"brats2020"`` (ET = 4) or ``"brats2023"`` (ET = 3).

    Returns:
        ``uint8`` label map of shape ``regions.shape[1:]``.
    """
    if convention not in ET_LABEL:
        raise ValueError(f"unknown label convention {convention!r}; use one of {CONVENTIONS}")
    regions = np.asarray(regions).astype(bool)
    if regions.shape[0] != 3:
        raise ValueError(f"expected 3 region masks (WT, TC, ET), got {regions.shape[0]}")
    enhancing = regions[2]
    core = regions[1] | enhancing
    whole = regions[0] | core
    label = np.zeros(regions.shape[1:], dtype=np.uint8)
    label[whole] = 2
    label[core] = 1
    label[enhancing] = ET_LABEL[convention]
    return label
