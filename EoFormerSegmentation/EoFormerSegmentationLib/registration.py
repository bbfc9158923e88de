"""Rigid co-registration of T1, T2 and FLAIR to the T1ce, for inputs not already aligned."""

from __future__ import annotations

import SimpleITK as sitk

__all__ = ["register_rigid"]


def register_rigid(fixed: sitk.Image, moving: sitk.Image, seed: int = 0) -> sitk.Transform:
    """Rigid (rotation + translation) transform aligning ``moving`` to ``fixed``.

    Mattes mutual information (suited to different MR contrasts), three resolution levels,
    regular-step gradient descent, starting from the alignment of the image centres.

    Args:
        fixed: the reference image (T1ce).
        moving: the image to align.
        seed: seed of the metric's random sampling, for repeatable results.

    Returns:
        A transform mapping points of ``fixed`` space to ``moving`` space, as
        :func:`~EoFormerSegmentationLib.geometry.resample_onto` expects.
    """
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=48)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.05, seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-3, numberOfIterations=150, gradientMagnitudeTolerance=1e-6
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=False)
    return method.Execute(fixed, moving)
