"""Reading and checking the four input MRI sequences.

Any format SimpleITK reads (NIfTI, NRRD, MHA, ...) or a folder holding one DICOM series.
Images are kept in SimpleITK's physical space (LPS, mm); nothing here changes the files.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple, Union

import numpy as np
import SimpleITK as sitk

from EoFormerSegmentationLib.errors import InputError

__all__ = ["SEQUENCES", "SEQUENCE_NAMES", "read_image", "read_sequences", "physical_bounds"]

SEQUENCES = ("t1", "t1ce", "t2", "flair")
"""Sequence keys, in the channel order of the network."""

SEQUENCE_NAMES = {"t1": "T1", "t1ce": "T1ce", "t2": "T2", "flair": "FLAIR"}

PathLike = Union[str, "os.PathLike[str]"]


def _read_dicom_series(folder: Path, series_uid: Optional[str] = None) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"{folder}: the folder holds no DICOM series")
    if series_uid is not None:
        if series_uid not in series:
            raise InputError(f"{folder}: the folder holds no DICOM series {series_uid}")
        series = [series_uid]
    if len(series) > 1:
        raise InputError(
            f"{folder}: the folder holds {len(series)} DICOM series; give a folder with one series"
        )
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series[0]))
    return reader.Execute()


def _count_non_finite_nifti(path: Path) -> int:
    """Non-finite voxels stored in a floating-point NIfTI file.

    SimpleITK's NIfTI reader silently turns NaN and infinite voxels into 0, so they are
    counted from the file itself (integer files cannot hold them and are not read twice).
    """
    import nibabel

    try:
        image = nibabel.load(str(path))
    except Exception:  # unreadable for nibabel: SimpleITK's reading decides
        return 0
    stored = image.header.get_data_dtype()
    if not np.issubdtype(stored, np.floating):
        return 0
    return int((~np.isfinite(np.asanyarray(image.dataobj))).sum())


def _nifti_data_bytes(path: Path) -> Optional[int]:
    """Bytes a NIfTI file must hold (header, extensions and voxels), from its header.

    ``None`` when nibabel cannot read the header (SimpleITK's reading then decides).
    """
    import nibabel

    try:
        header = nibabel.load(str(path)).header
        shape = header.get_data_shape()
        voxels = int(np.prod(shape, dtype=np.int64)) if shape else 0
        return int(header.get_data_offset()) + voxels * header.get_data_dtype().itemsize
    except Exception:  # not a NIfTI header nibabel understands
        return None


def _check_nifti_complete(path: Path, label: str) -> None:
    """Refuse a NIfTI file that holds fewer bytes than its header announces.

    SimpleITK reads a truncated ``.nii.gz`` (an interrupted copy or download) without an
    error and fills the missing slices with zeros, which would give a wrong segmentation
    silently. The file is decompressed as a stream, so this costs no memory.
    """
    expected = _nifti_data_bytes(path)
    if expected is None:
        return
    if path.name.lower().endswith(".gz"):
        held = 0
        try:
            with gzip.open(path, "rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    held += len(block)
                    if held >= expected:
                        break
        except (EOFError, OSError, zlib.error) as error:
            if held >= expected:
                return
            raise InputError(
                f"{path}: the {label} file is truncated or damaged: its compressed data ends "
                f"before the {expected} bytes its header announces ({error}; an interrupted "
                "copy or download?)"
            ) from error
    else:
        held = path.stat().st_size
    if held < expected:
        raise InputError(
            f"{path}: the {label} file is truncated: it holds {held} of the {expected} bytes "
            "its header announces (an interrupted copy or download?)"
        )


def read_image(
    path: PathLike, label: str = "image", series_uid: Optional[str] = None
) -> sitk.Image:
    """Read one 3D scalar image and check its values.

    Args:
        path: an image file or a folder with one DICOM series.
        label: what the image is (e.g. "T1ce"), used in error messages.
        series_uid: for a DICOM folder holding several series, the Series Instance UID of
            the one to read.

    Returns:
        The image as ``float32``.

    Raises:
        InputError: the file is missing, unreadable or truncated, not 3D, not scalar,
            contains NaN or infinite values, or is all zero. The message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {label} file not found")
    if path.is_file() and path.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti_complete(path, label)
    try:
        image = _read_dicom_series(path, series_uid) if path.is_dir() else sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else ""
        raise InputError(f"{path}: cannot read the {label} image ({first_line})") from error
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{path}: the {label} image has {image.GetNumberOfComponentsPerPixel()} components "
            "per voxel; expected a scalar (grey-level) image"
        )
    dimension = image.GetDimension()
    if dimension == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
        dimension = 3
    if dimension != 3:
        raise InputError(
            f"{path}: the {label} image is {dimension}D (size {image.GetSize()}); expected a "
            "3D volume"
        )
    if min(image.GetSize()) < 2:
        raise InputError(
            f"{path}: the {label} image is a single slice (size {image.GetSize()}); expected a "
            "3D volume"
        )
    image = sitk.Cast(image, sitk.sitkFloat32)
    values = sitk.GetArrayViewFromImage(image)
    count = int((~np.isfinite(values)).sum())
    if count == 0 and path.name.lower().endswith((".nii", ".nii.gz")):
        count = _count_non_finite_nifti(path)
    if count:
        raise InputError(f"{path}: the {label} image has {count} NaN or infinite voxels")
    if not np.any(values):
        raise InputError(f"{path}: the {label} image is all zero")
    return image


def physical_bounds(image: sitk.Image) -> Tuple[np.ndarray, np.ndarray]:
    """Lower and upper corners (LPS, mm) of the box covering the image's voxels."""
    size = np.array(image.GetSize())
    corners = []
    for corner in np.ndindex(2, 2, 2):
        index = np.where(np.array(corner) == 1, size - 0.5, -0.5)
        corners.append(image.TransformContinuousIndexToPhysicalPoint(index.tolist()))
    corners = np.array(corners)
    return corners.min(axis=0), corners.max(axis=0)


def _same_file(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return first.resolve() == second.resolve()


def read_sequences(
    paths: Mapping[str, PathLike], series: Optional[Mapping[str, str]] = None
) -> Dict[str, sitk.Image]:
    """Read T1, T1ce, T2 and FLAIR and check them against each other.

    Args:
        paths: sequence key (``t1``, ``t1ce``, ``t2``, ``flair``) -> file or DICOM folder.
        series: sequence key -> DICOM Series Instance UID, for sequences whose folder holds
            several series (one DICOM study folder may then be given for all four).

    Returns:
        Sequence key -> ``float32`` image, in :data:`SEQUENCES` order.

    Raises:
        InputError: a sequence is missing, the same file is given twice, an image is bad
            (see :func:`read_image`), or an image does not overlap the T1ce in space.
    """
    missing = [SEQUENCE_NAMES[key] for key in SEQUENCES if not paths.get(key)]
    if missing:
        raise InputError(f"missing input sequence(s): {', '.join(missing)}")
    resolved = {key: Path(paths[key]) for key in SEQUENCES}
    series = dict(series or {})
    for index, first in enumerate(SEQUENCES):
        for second in SEQUENCES[index + 1 :]:
            if (
                resolved[first].exists()
                and _same_file(resolved[first], resolved[second])
                and series.get(first) == series.get(second)
            ):
                raise InputError(
                    f"{resolved[first]}: the same file is given as {SEQUENCE_NAMES[first]} and "
                    f"{SEQUENCE_NAMES[second]}; four different sequences are needed"
                )
    images = {
        key: read_image(resolved[key], SEQUENCE_NAMES[key], series.get(key)) for key in SEQUENCES
    }
    low_ref, high_ref = physical_bounds(images["t1ce"])
    for key in ("t1", "t2", "flair"):
        low, high = physical_bounds(images[key])
        overlap = np.minimum(high, high_ref) - np.maximum(low, low_ref)
        if np.any(overlap <= 0):
            raise InputError(
                f"{resolved[key]}: the {SEQUENCE_NAMES[key]} image does not overlap the T1ce "
                f"image in physical space ({resolved['t1ce']}); check that both belong to the "
                "same patient and study"
            )
    return images
