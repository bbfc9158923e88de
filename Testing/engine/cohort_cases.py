"""Helpers of the cohort tests: small cases in several layouts, and DICOM studies."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import SimpleITK as sitk
from engine_cases import SEQUENCES, brain_with_cube, rasterise, write_case

SMALL_GRID = {"size": (32, 32, 32), "spacing": (1.0, 1.0, 1.0), "direction": np.eye(3)}
"""A 32 mm cube at 1 mm: segmented in about a second by the tiny network."""

CUBE_SIDE_MM = 8.0
"""Side of the bright cube of :func:`write_small_case`: its volume is 0.512 mL."""


def small_values():
    """Ball-shaped brain (radius 14 mm) with a bright 8 mm cube."""
    return brain_with_cube(
        brain_radius_mm=14.0, cube_side_mm=CUBE_SIDE_MM, cube_centre_mm=(3, 0, 0)
    )


def write_small_case(folder: Path, names: Optional[Dict[str, str]] = None) -> Dict[str, Path]:
    """Four small sequences; ``names`` renames files (sequence -> file name)."""
    paths = write_case(folder, {key: SMALL_GRID for key in SEQUENCES}, small_values())
    for key, name in (names or {}).items():
        target = folder / name
        if name.endswith(".nrrd"):
            sitk.WriteImage(sitk.ReadImage(str(paths[key])), str(target))
            paths[key].unlink()
        else:
            paths[key].rename(target)
        paths[key] = target
    return paths


def write_dicom_series(
    image: sitk.Image, folder: Path, description: str, series_uid: str, study_uid: str
) -> None:
    """One MR series, a file per axial slice, with its Series Description."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    orientation = "\\".join(f"{value:g}" for value in (*direction[0:7:3], *direction[1:8:3]))
    for z in range(image.GetDepth()):
        plane = sitk.Cast(image[:, :, z : z + 1], sitk.sitkInt16)
        position = image.TransformIndexToPhysicalPoint((0, 0, z))
        tags = {
            "0008|0060": "MR",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
            "0008|0018": f"{series_uid}.{z + 1}",
            "0008|103e": description,
            "0010|0020": "COHORT-TEST",
            "0020|000d": study_uid,
            "0020|000e": series_uid,
            "0020|0013": str(z + 1),
            "0020|0032": "\\".join(f"{value:g}" for value in position),
            "0020|0037": orientation,
            "0018|0050": f"{image.GetSpacing()[2]:g}",
        }
        for key, value in tags.items():
            plane.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"{series_uid.rsplit('.', 1)[-1]}_{z:03d}.dcm"))
        writer.Execute(plane)


def write_dicom_study(
    folder: Path,
    descriptions: Sequence[str],
    one_folder_per_series: bool = True,
    study: int = 1,
) -> None:
    """A DICOM study with one series per description (each sequence its own contrast)."""
    values = small_values()
    grid = dict(SMALL_GRID, size=(32, 32, 16))
    study_uid = f"1.2.826.0.1.3680043.9.7777.{study}"
    for index, description in enumerate(descriptions):
        image = rasterise(values, **grid) * (1.0 + 0.1 * index)
        series_folder = folder / f"series{index + 1}" if one_folder_per_series else folder
        write_dicom_series(image, series_folder, description, f"{study_uid}.{index + 1}", study_uid)
