"""DICOM studies: find them, and tell their T1, T1ce, T2 and FLAIR series apart.

A study is a folder holding the DICOM files of its series, all in the folder itself or one
series per sub-folder. Series are matched to sequences by their Series Description (or
Protocol Name) with :func:`sequence_from_description`; a sequence with no series or with
several is an error that lists the candidates: nothing is guessed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.volumes import SEQUENCE_NAMES, SEQUENCES

__all__ = [
    "DicomSeries",
    "is_dicom_study",
    "sequence_from_description",
    "study_series",
    "match_dicom_series",
    "sub_folders",
]

PathLike = Union[str, "os.PathLike[str]"]

_DICOM_MAGIC_OFFSET = 128
_DICOM_FILES_PROBED = 4


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series of a study.

    Attributes:
        folder: the folder holding its files (the study folder or a series sub-folder).
        uid: its Series Instance UID.
        description: its Series Description (or, when empty, its Protocol Name).
        files: how many files (slices) it has.
    """

    folder: Path
    uid: str
    description: str
    files: int

    def describe(self) -> str:
        """``'T2 AX' (folder/, 24 files)`` for messages."""
        return f"'{self.description}' ({self.folder.name}/, {self.files} files)"


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def sub_folders(folder: Path) -> List[Path]:
    """The folder's sub-folders, sorted by name, hidden ones (``.name``) left out."""
    try:
        return [
            child for child in sorted(folder.iterdir()) if child.is_dir() and not _is_hidden(child)
        ]
    except OSError as error:
        raise InputError(f"{folder}: cannot list the folder ({error})") from error


def _first_dicom_file(folder: Path) -> Optional[Path]:
    """A DICOM file (``.dcm``, or ``DICM`` at byte 128) among the first files of ``folder``."""
    probed = 0
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return None
    for path in entries:
        if _is_hidden(path) or not path.is_file():
            continue
        if path.name.lower().endswith(".dcm"):
            return path
        try:
            with open(path, "rb") as stream:
                stream.seek(_DICOM_MAGIC_OFFSET)
                if stream.read(4) == b"DICM":
                    return path
        except OSError:
            pass
        probed += 1
        if probed >= _DICOM_FILES_PROBED:
            return None
    return None


def _dicom_tag(file: Path, tag: str) -> str:
    """A tag's value (``"0020|000d"``) read from a DICOM file's header; ``""`` when absent."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(file))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return ""
    return reader.GetMetaData(tag).strip() if reader.HasMetaDataKey(tag) else ""


def is_dicom_study(folder: Path) -> bool:
    """True for a study folder: DICOM files in the folder itself, or one series per sub-folder of one study.

    Sub-folders holding DICOM files of different studies (Study Instance UID) are studies of
    their own (a folder of flat studies), not the series of one.
    """
    if _first_dicom_file(folder) is not None:
        return True
    studies = set()
    series_folders = 0
    for child in sub_folders(folder):
        first = _first_dicom_file(child)
        if first is None:
            continue
        series_folders += 1
        studies.add(_dicom_tag(first, "0020|000d"))
        if len(studies) > 1:
            return False
    return series_folders >= 2


_OTHER_SERIES = re.compile(
    r"t2\*|\bt2star|\bswi\b|\bswan\b|\bdwi\b|\bdiffusion|\badc\b|\bdti\b|\btrace\b|\bperf|"
    r"\bpwi\b|\bdsc\b|\bdce\b|\basl\b|\blocali[sz]er|\bscout\b|\bsurvey\b|\bmip\b|\btof\b|"
    r"\bmra\b|\bcalibration\b|\bb0\b|\bfa\b"
)
_FLAIR = re.compile(r"flair|dark[ -]?fluid|\btirm\b|\bt2f\b")
_T1 = re.compile(r"\bt1|\bmprage\b|\bmp rage\b|\bspgr\b|\bfspgr\b|\bbravo\b|\bvibe\b")
_T2 = re.compile(r"\bt2")
_NO_CONTRAST = re.compile(
    r"\bpre\b|\bprecontrast|\bnative?\b|\bt1n\b|\bnon ?contrast|\bwithout\b|\bw/?o\b|\bplain\b"
)
_CONTRAST = re.compile(
    r"\+ ?(c|gd|gad|contrast)\b|\bc ?\+|\bpost|\bgd\b|\bgad|\bgado|contrast|\bce\b|\bt1c\b|"
    r"\bt1ce\b|\bt1gd\b|\bt1 ?\+|\bwith\b|\bw/ ?c\b|\bmdc\b|\bkm\b"
)


def sequence_from_description(description: str) -> Optional[str]:
    """The sequence (``t1``, ``t1ce``, ``t2``, ``flair``) a DICOM Series Description names.

    ``FLAIR`` / dark-fluid -> ``flair`` (a T1-weighted FLAIR counts as T1); ``T1`` (or MPRAGE,
    SPGR, BRAVO, VIBE) with a contrast marker (``post``, ``+C``, ``Gd``, ``CE``, ``T1c``...) and
    no pre-contrast marker (``pre``, ``native``, ``T1n``...) -> ``t1ce``, else ``t1``; ``T2``
    -> ``t2``. Series that are none of the four (T2*, SWI, diffusion, ADC, perfusion,
    localisers, MIPs) and descriptions that name none -> ``None``.

    Args:
        description: the Series Description (or Protocol Name).
    """
    text = re.sub(r"[_\-.,;:()\[\]]+", " ", description.lower()).strip()
    if not text or _OTHER_SERIES.search(text):
        return None
    if _T1.search(text):
        if _CONTRAST.search(text) and not _NO_CONTRAST.search(text):
            return "t1ce"
        return "t1"
    if _FLAIR.search(text):
        return "flair"
    if _T2.search(text):
        return "t2"
    return None


def _series_description(first_file: str) -> str:
    """Series Description, or the Protocol Name when the description is empty."""
    return _dicom_tag(Path(first_file), "0008|103e") or _dicom_tag(Path(first_file), "0018|1030")


def study_series(folder: Path) -> List[DicomSeries]:
    """Every DICOM series in ``folder`` and its direct sub-folders, with its description."""
    import SimpleITK as sitk

    found: List[DicomSeries] = []
    for location in [folder, *sub_folders(folder)]:
        if _first_dicom_file(location) is None:
            continue
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(location)):
            files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(location), uid)
            if files:
                found.append(DicomSeries(location, uid, _series_description(files[0]), len(files)))
    return found


def match_dicom_series(folder: PathLike) -> Dict[str, DicomSeries]:
    """The series of a DICOM study that are its T1, T1ce, T2 and FLAIR.

    Series are read from the study folder and its direct sub-folders and matched by
    :func:`sequence_from_description`; nothing is guessed.

    Args:
        folder: the study folder.

    Returns:
        Sequence -> its series.

    Raises:
        InputError: a sequence has no series, or more than one (all candidates are listed
            with their descriptions, folders and file counts).
    """
    folder = Path(folder)
    series = study_series(folder)
    if not series:
        raise InputError(f"{folder}: the DICOM study holds no readable series")
    candidates: Dict[str, List[DicomSeries]] = {key: [] for key in SEQUENCES}
    for item in series:
        sequence = sequence_from_description(item.description)
        if sequence is not None:
            candidates[sequence].append(item)
    problems = []
    for key in SEQUENCES:
        name = SEQUENCE_NAMES[key]
        if not candidates[key]:
            problems.append(f"no series for {name}")
        elif len(candidates[key]) > 1:
            listed = ", ".join(item.describe() for item in candidates[key])
            problems.append(f"{len(candidates[key])} series could be {name}: {listed}")
    if problems:
        found = ", ".join(item.describe() for item in series)
        raise InputError(
            f"{folder}: cannot tell the four sequences apart by their series descriptions: "
            f"{'; '.join(problems)} (series in the study: {found}); keep one series per "
            "sequence in the study folder, or give the case as image files named t1, t1ce, "
            "t2, flair"
        )
    return {key: candidates[key][0] for key in SEQUENCES}
