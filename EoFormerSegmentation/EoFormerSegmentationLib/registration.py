"""Rigid co-registration of T1, T2 and FLAIR to the T1ce, for inputs not already aligned.

BraTS images share one grid and are aligned; hospital scans are not: each sequence has its own
grid (often 2-D slices 4-6 mm thick, axial or sagittal) and the patient may move between
them. :func:`needs_registration` tells the two apart from the headers, :func:`register_rigid`
aligns a sequence to the T1ce, and :func:`describe_transform` states how far it moved it, with
a warning when that looks like a failure rather than patient motion.
"""

from __future__ import annotations

import math
from typing import Any, Dict

import numpy as np
import SimpleITK as sitk

__all__ = [
    "REGISTER_MODES",
    "MOTION_WARNING_MM",
    "MOTION_WARNING_DEGREES",
    "needs_registration",
    "register_rigid",
    "describe_transform",
]

REGISTER_MODES = ("auto", "on", "off")
"""``--register`` choices: ``auto`` registers a sequence whose grid differs from the T1ce's."""

MOTION_WARNING_MM = 20.0
"""A registration that moves a sequence further than this (mm, at the centre) is reported."""

MOTION_WARNING_DEGREES = 15.0
"""A registration that rotates a sequence more than this (degrees) is reported."""

_REGISTRATION_SPACING_MM = 2.0
_CENTRE_ALIGNMENT_MM = 50.0


def _centre(image: sitk.Image) -> np.ndarray:
    """Physical centre of an image's extent (LPS, mm)."""
    index = [(n - 1) / 2.0 for n in image.GetSize()]
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint(index))


def needs_registration(reference: sitk.Image, image: sitk.Image, tolerance: float = 1e-3) -> bool:
    """True when ``image`` is not on the grid of ``reference`` (size, spacing, origin, direction).

    Sequences written on one grid come from a pipeline that already aligned them (BraTS);
    sequences on different grids are separate acquisitions, which patient motion may have
    misaligned.
    """
    if image.GetSize() != reference.GetSize():
        return True
    for first, second in (
        (image.GetSpacing(), reference.GetSpacing()),
        (image.GetOrigin(), reference.GetOrigin()),
        (image.GetDirection(), reference.GetDirection()),
    ):
        if not np.allclose(first, second, atol=tolerance):
            return True
    return False


def _isotropic(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """``image`` resampled linearly onto an isotropic grid of ``spacing_mm`` (same extent)."""
    size = [
        max(int(round(n * s / spacing_mm)), 1) for n, s in zip(image.GetSize(), image.GetSpacing())
    ]
    return sitk.Resample(
        image,
        size,
        sitk.Transform(),
        sitk.sitkLinear,
        image.GetOrigin(),
        [spacing_mm] * 3,
        image.GetDirection(),
        0.0,
        sitk.sitkFloat32,
    )


def register_rigid(fixed: sitk.Image, moving: sitk.Image, seed: int = 0) -> sitk.Transform:
    """Rigid (rotation + translation) transform aligning ``moving`` to ``fixed``.

    Mattes mutual information (suited to different MR contrasts), two resolution levels,
    regular-step gradient descent. Sequences of one session share the scanner's coordinates,
    so the search starts from the identity; only when the images' centres are more than
    :data:`_CENTRE_ALIGNMENT_MM` apart (other sessions, other scanners) does it start from the
    alignment of the centres. The fixed
    image is first resampled onto an isotropic 2 mm grid, so that a thick-slice T1ce (5-6 mm
    slices) is sampled as densely in every direction and the pyramid never collapses its few
    slices.

    Args:
        fixed: the reference image (T1ce).
        moving: the image to align.
        seed: seed of the metric's random sampling, for repeatable results.

    Returns:
        A transform mapping points of ``fixed`` space to ``moving`` space, as
        :func:`~EoFormerSegmentationLib.geometry.resample_onto` expects.
    """
    fixed = _isotropic(sitk.Cast(fixed, sitk.sitkFloat32), _REGISTRATION_SPACING_MM)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    fixed_centre = _centre(fixed)
    offset = _centre(moving) - fixed_centre
    initial = sitk.Euler3DTransform()
    initial.SetCenter(fixed_centre.tolist())
    if np.linalg.norm(offset) > _CENTRE_ALIGNMENT_MM:
        initial.SetTranslation(offset.tolist())
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=48)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.1, seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-3, numberOfIterations=200, gradientMagnitudeTolerance=1e-6
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([2.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=False)
    return method.Execute(fixed, moving)


def describe_transform(
    transform: sitk.Transform, name: str, reference: sitk.Image
) -> Dict[str, Any]:
    """Size of a rigid registration: rotation (degrees) and displacement (mm) of the centre.

    The displacement is that of the reference's centre point, in scanner coordinates: 0 for
    sequences that were already aligned, the patient's motion otherwise.

    Args:
        transform: a result of :func:`register_rigid`.
        name: the sequence, for the warning.
        reference: the fixed image (T1ce).

    Returns:
        ``{"rotation_deg", "translation_mm", "warnings"}``.
    """
    euler = _as_euler(transform)
    matrix = np.asarray(euler.GetMatrix()).reshape(3, 3)
    angle = math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(matrix) - 1.0) / 2.0))))
    centre = _centre(reference)
    translation = float(
        np.linalg.norm(np.asarray(transform.TransformPoint(centre.tolist())) - centre)
    )
    warnings = []
    if translation > MOTION_WARNING_MM or angle > MOTION_WARNING_DEGREES:
        warnings.append(
            f"{name}: registration to the T1ce moved it by {translation:.1f} mm and "
            f"{angle:.1f} degrees, more than patient motion usually explains; check the "
            "alignment (or use --register off if the images were already aligned)"
        )
    return {
        "rotation_deg": round(angle, 2),
        "translation_mm": round(translation, 2),
        "warnings": warnings,
    }


def _as_euler(transform: sitk.Transform) -> sitk.Euler3DTransform:
    """The Euler transform inside a registration result (possibly a composite)."""
    if isinstance(transform, sitk.CompositeTransform):
        transform = transform.GetBackTransform()
    return sitk.Euler3DTransform(transform)
