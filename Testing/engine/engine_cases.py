"""Helpers of the engine tests: small cases with chosen geometry, and a stand-in network."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import SimpleITK as sitk

TINY_MODEL_CONFIG = {"encoder_dims": [4, 8, 16, 32], "decoder_dims": [16, 8, 4], "head_channels": 2}
"""About 0.1 M parameters: a whole BraTS-size case runs in seconds on two CPU cores."""

SEQUENCES = ("t1", "t1ce", "t2", "flair")


def rotation(degrees_z: float, degrees_x: float) -> np.ndarray:
    """A direction matrix: rotation about z, then about x (degrees)."""
    z, x = np.radians(degrees_z), np.radians(degrees_x)
    about_z = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    return about_x @ about_z


def rasterise(
    function: Callable[[np.ndarray], np.ndarray],
    size: Sequence[int],
    spacing: Sequence[float],
    direction: np.ndarray,
    centre: Sequence[float] = (0.0, 0.0, 0.0),
) -> sitk.Image:
    """An image whose voxel values are ``function(physical points, LPS mm)``.

    The grid (``size``, ``spacing`` mm, ``direction``) is placed so that its centre lies at
    ``centre``.
    """
    size = np.asarray(size)
    spacing = np.asarray(spacing, float)
    half_extent = direction @ (spacing * (size - 1) / 2.0)
    origin = np.asarray(centre, float) - half_extent
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    indices = np.stack([i, j, k], axis=-1).astype(float)  # (z, y, x, 3) as (i, j, k)
    points = origin + (indices * spacing) @ direction.T
    image = sitk.GetImageFromArray(function(points).astype(np.float32))
    image.SetSpacing(tuple(spacing))
    image.SetDirection(tuple(direction.ravel()))
    image.SetOrigin(tuple(origin))
    return image


def brain_with_cube(
    brain_radius_mm: float = 50.0,
    cube_centre_mm: Sequence[float] = (12.0, -8.0, 6.0),
    cube_side_mm: float = 28.0,
) -> Callable[[np.ndarray], np.ndarray]:
    """A ball-shaped "brain" (value 100) with a bright cube (value 1000) inside it."""
    cube_centre = np.asarray(cube_centre_mm)

    def values(points: np.ndarray) -> np.ndarray:
        brain = np.linalg.norm(points, axis=-1) <= brain_radius_mm
        cube = np.all(np.abs(points - cube_centre) <= cube_side_mm / 2, axis=-1)
        return np.where(cube, 1000.0, np.where(brain, 100.0, 0.0))

    return values


def write_case(
    folder: Path,
    grids: Optional[Dict[str, dict]] = None,
    values: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> Dict[str, Path]:
    """Write four sequences (``<folder>/<sequence>.nii.gz``) and return their paths.

    Args:
        folder: where to write (created).
        grids: per sequence, keyword arguments of :func:`rasterise` (size, spacing,
            direction); a small axis-aligned 1 mm grid by default.
        values: the image content as a function of physical position.
    """
    folder.mkdir(parents=True, exist_ok=True)
    values = values or brain_with_cube(
        brain_radius_mm=20.0, cube_side_mm=12.0, cube_centre_mm=(4, 0, 0)
    )
    default = {"size": (48, 48, 48), "spacing": (1.0, 1.0, 1.0), "direction": np.eye(3)}
    paths = {}
    for index, sequence in enumerate(SEQUENCES):
        grid = dict(default, **(grids or {}).get(sequence, {}))
        # each sequence gets its own contrast so that no two files are identical
        image = rasterise(values, **grid) * (1.0 + 0.1 * index)
        paths[sequence] = folder / f"{sequence}.nii.gz"
        sitk.WriteImage(image, str(paths[sequence]))
    return paths


def bright_voxels_as_tumor(monkeypatch) -> None:
    """Replace the network by a rule: every region is where the normalised T1ce is bright.

    What comes back then shows where the pipeline put the T1ce's cube, i.e. whether the
    resampling to the network grid, the crop, the padding and the way back are exact.
    """
    from EoFormerSegmentationLib import engine

    def network(loaded, volume, *arguments, **keywords):
        bright = (volume[1] > 2.0).astype(np.float32)
        return np.repeat(bright[None], 3, axis=0), "cpu"

    monkeypatch.setattr(engine, "_run_network", network)


def graded_tumor(monkeypatch, quantiles: Sequence[float] = (0.85, 0.93, 0.97)) -> None:
    """Replace the network by a rule giving three distinct, nested, non-empty regions.

    WT, TC and ET are the voxels where the normalised T1ce is brighter than these quantiles of
    its brain voxels, so that every label (NCR, ED, ET) appears in the output.
    """
    from EoFormerSegmentationLib import engine

    def network(loaded, volume, *arguments, **keywords):
        t1ce = volume[1]
        thresholds = np.quantile(t1ce[t1ce != 0], quantiles)
        return np.stack([(t1ce > level).astype(np.float32) for level in thresholds]), "cpu"

    monkeypatch.setattr(engine, "_run_network", network)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def segment_arguments(paths: Dict[str, Path], output: Path, model: Path, *extra: str) -> list:
    """``eoformer segment`` arguments for four sequence files."""
    arguments = ["segment", "--output", str(output), "--model", str(model), "--device", "cpu"]
    for sequence in SEQUENCES:
        arguments += [f"--{sequence}", str(paths[sequence])]
    return arguments + ["--progress", "none", *extra]
