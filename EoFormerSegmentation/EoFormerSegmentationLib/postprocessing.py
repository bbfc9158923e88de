"""From probabilities to WT / TC / ET masks: threshold, nesting, small-component cleanup; and
the plausibility checks that warn about a result that is probably wrong."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
from scipy import ndimage

__all__ = [
    "PostprocessingSettings",
    "postprocess_regions",
    "PlausibilityLimits",
    "plausibility_warnings",
]


@dataclass
class PostprocessingSettings:
    """Post-processing settings.

    Attributes:
        threshold: probability above which a voxel belongs to a region.
        threshold_wt, threshold_tc, threshold_et: a region's own threshold, in place of
            ``threshold`` (``None``: ``threshold``). A network trained on few cases is often
            too cautious at 0.5 for one region (the edema of the whole tumor, say); a lower
            threshold chosen on validation cases gives back what it was unsure about.
        min_component_ml: connected components of the whole tumor smaller than this (mL) are
            removed (isolated false positives), together with TC and ET inside them.
        min_enhancing_ml: when the whole enhancing tumor is smaller than this (mL), it is
            relabelled as necrotic / non-enhancing core (NCR). A common BraTS practice: a tiny
            predicted ET is more often a false positive than a true one, and an empty ET on a
            case without ET scores Dice 1 instead of 0. 0 disables it.
        min_component_fraction: connected components of the whole tumor smaller than this
            fraction of the largest one are removed as well (false-positive islands far from
            the tumor, whatever their size in mL); 0 disables it.
        min_component_mass: connected components of the whole tumor whose summed WT
            probability (in mL: probability x voxel volume) is under this are removed; a
            component the network was unsure about throughout is more often noise than tumor.
            0 disables it.
        min_core_fraction: connected components of the tumor core smaller than this fraction
            of the largest one lose their core and enhancing labels and stay in the whole tumor
            (as edema). In thick slabs of a raw scan, bright vessels, dura or fat averaged into
            the brain's edge give small second "cores" far from the tumor; a satellite focus of
            a multifocal tumor that is this much smaller than the main one loses its core too.
            0 disables it.
    """

    threshold: float = 0.5
    min_component_ml: float = 0.1
    min_enhancing_ml: float = 0.3
    min_component_fraction: float = 0.0
    min_component_mass: float = 0.0
    min_core_fraction: float = 0.0
    threshold_wt: Optional[float] = None
    threshold_tc: Optional[float] = None
    threshold_et: Optional[float] = None

    def __post_init__(self) -> None:
        for name in ("threshold", "threshold_wt", "threshold_tc", "threshold_et"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value < 1.0:
                raise ValueError(f"post-processing {name} = {value}: must lie between 0 and 1")

    def region_thresholds(self) -> Tuple[float, float, float]:
        """The thresholds of WT, TC and ET."""
        return tuple(
            self.threshold if value is None else value
            for value in (self.threshold_wt, self.threshold_tc, self.threshold_et)
        )

    @classmethod
    def from_card(cls, card: Optional[Mapping[str, Any]]) -> PostprocessingSettings:
        """The settings a model card recommends (its ``postprocessing`` entry), else defaults.

        A model's post-processing is chosen on its validation cases and saved in its card, so
        that a model is always used with the rules it was measured with. Unknown keys are
        ignored (cards written by newer versions).

        Raises:
            ValueError: a threshold outside 0-1.
        """
        recommended = (card or {}).get("postprocessing") or {}
        known = {f.name for f in fields(cls)}
        return cls(**{k: float(v) for k, v in recommended.items() if k in known and v is not None})

    def to_json(self) -> Dict[str, float]:
        """The settings as a JSON-serialisable dict (a region's threshold only when it has one)."""
        return {key: value for key, value in asdict(self).items() if value is not None}


def _components(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 26-connected components of ``mask``: the labelled array, the labels and each
    component's size in voxels."""
    components, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    labels = np.arange(1, count + 1)
    return components, labels, ndimage.sum_labels(mask, components, index=labels)


def postprocess_regions(
    probabilities: np.ndarray, voxel_volume_ml: float, settings: PostprocessingSettings = None
) -> np.ndarray:
    """Binary WT / TC / ET masks from their probabilities.

    Args:
        probabilities: ``(3, X, Y, Z)`` probabilities (0-1) of WT, TC, ET.
        voxel_volume_ml: volume of one voxel, mL.
        settings: thresholds; defaults of :class:`PostprocessingSettings` when ``None``.

    Returns:
        Boolean ``(3, X, Y, Z)`` masks, nested (ET within TC within WT).
    """
    settings = settings or PostprocessingSettings()
    thresholds = np.asarray(settings.region_thresholds(), dtype=np.float32)
    masks = probabilities > thresholds.reshape((3,) + (1,) * (probabilities.ndim - 1))
    whole, core, enhancing = masks[0], masks[1], masks[2]
    # Nesting: a voxel confidently in an inner region belongs to the outer ones too.
    core = core | enhancing
    whole = whole | core

    component_rules = (
        settings.min_component_ml > 0
        or settings.min_component_fraction > 0
        or settings.min_component_mass > 0
    )
    if component_rules and whole.any():
        components, labels, sizes = _components(whole)
        sizes = sizes * voxel_volume_ml
        drop = sizes < settings.min_component_ml
        drop |= sizes < settings.min_component_fraction * sizes.max()
        if settings.min_component_mass > 0:
            mass = ndimage.sum_labels(probabilities[0], components, index=labels)
            drop |= mass * voxel_volume_ml < settings.min_component_mass
        small = labels[drop]
        if len(small):
            removed = np.isin(components, small)
            whole &= ~removed
            core &= ~removed
            enhancing &= ~removed

    if settings.min_core_fraction > 0 and core.any():
        components, labels, sizes = _components(core)
        stray = labels[sizes < settings.min_core_fraction * sizes.max()]
        if len(stray):
            demoted = np.isin(components, stray)
            core &= ~demoted
            enhancing &= ~demoted

    if (
        settings.min_enhancing_ml > 0
        and enhancing.sum() * voxel_volume_ml < settings.min_enhancing_ml
    ):
        enhancing = np.zeros_like(enhancing)  # its voxels stay in TC, i.e. become NCR
    return np.stack([whole, core, enhancing])


@dataclass
class PlausibilityLimits:
    """Limits beyond which a segmentation is reported as implausible (a warning, not a change).

    Attributes:
        max_whole_tumor_ml: a whole tumor larger than this (mL, about a third of an adult
            brain) is implausible; a scan that still has its skull and scalp can give several
            hundred mL of false tumor.
        max_border_slices: a whole tumor that reaches the edge of the image on more slices
            than this (along any axis) is implausible: the brain, and so the tumor, lies
            inside the head, away from the image's edges, unless the image is cut through the
            tumor or holds skull and scalp.
    """

    max_whole_tumor_ml: float = 400.0
    max_border_slices: int = 10


def _border_slices(whole: np.ndarray) -> int:
    """Most slices, along any axis, on which ``whole`` has voxels at the image's edge."""
    border = np.zeros_like(whole, dtype=bool)
    for axis in range(whole.ndim):
        for end in (0, -1):
            index = [slice(None)] * whole.ndim
            index[axis] = end
            border[tuple(index)] = True
    touching = whole & border
    if not touching.any():
        return 0
    counts = []
    for axis in range(whole.ndim):
        others = tuple(a for a in range(whole.ndim) if a != axis)
        counts.append(int(np.count_nonzero(touching.any(axis=others))))
    return max(counts)


def plausibility_warnings(
    masks: np.ndarray, voxel_volume_ml: float, limits: Optional[PlausibilityLimits] = None
) -> List[str]:
    """Warnings about a segmentation that is probably wrong, for the user to see.

    Args:
        masks: ``(3, X, Y, Z)`` WT / TC / ET masks (from :func:`postprocess_regions`).
        voxel_volume_ml: volume of one voxel, mL.
        limits: the limits; defaults of :class:`PlausibilityLimits` when ``None``.

    Returns:
        One sentence per problem found (empty when the result looks plausible). Each starts
        with ``warning:`` and says what to check.
    """
    limits = limits or PlausibilityLimits()
    whole = np.asarray(masks[0], dtype=bool)
    warnings: List[str] = []
    whole_ml = float(np.count_nonzero(whole)) * voxel_volume_ml
    if whole_ml > limits.max_whole_tumor_ml:
        warnings.append(
            f"warning: implausible result: the whole tumor is {whole_ml:.0f} mL (more than "
            f"{limits.max_whole_tumor_ml:.0f} mL); check that the images are skull-stripped "
            "brain MRI and that the sequences are assigned correctly before using it"
        )
    slices = _border_slices(whole)
    if slices > limits.max_border_slices:
        warnings.append(
            f"warning: implausible result: the whole tumor reaches the edge of the image on "
            f"{slices} slices; the images may still hold the skull and scalp, or be cut "
            "through the tumor; check the result before using it"
        )
    return warnings
