"""The segmentation pipeline that the command line, the Slicer module and the benchmark share.

Four MRI sequences in; WT / TC / ET out on the grid of the T1ce, exactly (same size, spacing,
origin and direction), as a Slicer segmentation or a BraTS label map.

Steps: read and check the images -> rigid co-registration of T1, T2 and FLAIR to the T1ce
(automatic when their grids differ from the T1ce's) -> resample onto the network grid (1 mm,
RAS) -> brain extraction (automatic when a scan is not skull-stripped) -> z-score over the
brain, crop to the brain, pad to a multiple of 16 -> fused EoFormer over a Gaussian-blended
sliding window -> sigmoid probabilities resampled (linearly) back onto the T1ce grid ->
threshold, nesting and cleanup -> write.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import numpy as np
import SimpleITK as sitk

from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.files import check_writable_folder
from EoFormerSegmentationLib.geometry import (
    array_to_image,
    image_to_array,
    network_grid,
    resample_onto,
)
from EoFormerSegmentationLib.labels import CONVENTIONS, ET_LABEL, REGIONS, regions_to_labels
from EoFormerSegmentationLib.models import LoadedModel, default_model_path, load_checkpoint
from EoFormerSegmentationLib.postprocessing import (
    PostprocessingSettings,
    plausibility_warnings,
    postprocess_regions,
)
from EoFormerSegmentationLib.preprocessing import (
    brain_bounding_box,
    normalize_intensity,
    pad_to_multiple,
)
from EoFormerSegmentationLib.segmentation_file import (
    output_kind,
    write_label_map,
    write_seg_nrrd,
)
from EoFormerSegmentationLib.volumes import SEQUENCES, read_sequences

__all__ = [
    "SegmentationResult",
    "PreparedVolume",
    "prepare_images",
    "segment_images",
    "segment_files",
    "write_result",
    "NOT_FOR_CLINICAL_USE",
]

NOT_FOR_CLINICAL_USE = "Research software, not for clinical use."
PathLike = Union[str, "os.PathLike[str]"]
ProgressCallback = Optional[Callable[[float, str], None]]


@dataclass
class SegmentationResult:
    """What one segmentation produced.

    Attributes:
        label_map: ``uint8`` BraTS label map on the T1ce grid (convention in ``convention``).
        regions: ``WT`` / ``TC`` / ``ET`` -> ``uint8`` 0/1 images on the T1ce grid.
        volumes_ml: volume of each region, mL.
        timings_s: seconds spent in each stage.
        device: the device the network ran on (``cpu``, ``cuda``...).
        model_name: name of the model (also written into the output file).
        model_sha256: SHA-256 of the model file.
        convention: label convention of ``label_map``.
        output: the written file, if any.
        notes: messages for the user (for example a fallback from GPU to CPU).
        processing: what was done around the network (registration transforms, brain
            extraction, post-processing settings), for the report.
        probabilities: ``float32`` ``(3, X, Y, Z)`` WT / TC / ET probabilities on the T1ce
            grid (indexed ``[x, y, z]``), kept only when asked for (evaluation, tuning).
        uncertainty: ``float32`` map on the T1ce grid (bits, 0-1, see
            :mod:`~EoFormerSegmentationLib.uncertainty`), only when asked for.
        uncertainty_summary: uncertain volume (mL) and confidence (0-1) per region, with
            ``uncertainty``.
    """

    label_map: sitk.Image
    regions: Dict[str, sitk.Image]
    volumes_ml: Dict[str, float]
    timings_s: Dict[str, float]
    device: str
    model_name: str
    model_sha256: str
    convention: str
    output: Optional[Path] = None
    notes: List[str] = field(default_factory=list)
    processing: Dict[str, Any] = field(default_factory=dict)
    probabilities: Optional[np.ndarray] = None
    uncertainty: Optional[sitk.Image] = None
    uncertainty_summary: Optional[Dict[str, Dict[str, float]]] = None

    def report(self) -> Dict[str, Any]:
        """JSON-serialisable summary (volumes in mL, timings in s, device, model)."""
        return {
            "output": str(self.output) if self.output else None,
            "volumes_ml": {k: round(v, 3) for k, v in self.volumes_ml.items()},
            "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
            "device": self.device,
            "model": {"name": self.model_name, "sha256": self.model_sha256},
            "label_convention": self.convention,
            "processing": self.processing,
            **({"uncertainty": self.uncertainty_summary} if self.uncertainty_summary else {}),
            "notes": list(self.notes),
            "disclaimer": NOT_FOR_CLINICAL_USE,
        }


class _Stages:
    """Times stages and reports progress."""

    def __init__(self, progress: ProgressCallback):
        self.progress = progress
        self.timings: Dict[str, float] = {}
        self._name: Optional[str] = None
        self._start = 0.0

    def start(self, name: str, fraction: float, message: str) -> None:
        self.stop()
        self._name, self._start = name, time.perf_counter()
        if self.progress is not None:
            self.progress(fraction, message)

    def stop(self) -> None:
        if self._name is not None:
            elapsed = time.perf_counter() - self._start
            self.timings[self._name] = self.timings.get(self._name, 0.0) + elapsed
            self._name = None


def _run_network(
    loaded: LoadedModel,
    volume: np.ndarray,
    device_request: str,
    tta: bool,
    overlap: float,
    sw_batch_size: Optional[int],
    progress: ProgressCallback,
    should_cancel: Optional[Callable[[], bool]],
    notes: List[str],
    mode: str = "auto",
):
    import torch

    from EoFormerSegmentationLib.inference import predict_probabilities, select_device

    device = select_device(device_request)
    model = loaded.model
    if not getattr(model, "is_fused", False):
        model.fuse()

    # The network's share of the progress bar is 0.25-0.85; a retry on the CPU after running
    # out of GPU memory fills what is left of it, so that the bar never goes backwards.
    start = reached = 0.25

    def scaled(fraction: float, message: str) -> None:
        nonlocal reached
        value = start + (0.85 - start) * fraction
        reached = max(reached, value)
        if progress is not None:
            progress(value, message)

    try:
        probabilities = predict_probabilities(
            model,
            volume,
            device,
            overlap=overlap,
            sw_batch_size=sw_batch_size,
            tta=tta,
            progress=scaled,
            should_cancel=should_cancel,
            mode=mode,
        )
    except torch.cuda.OutOfMemoryError:
        model.to("cpu")
        torch.cuda.empty_cache()
        message = "the GPU ran out of memory; the segmentation was finished on the CPU"
        notes.append(message)
        start = reached
        if progress is not None:
            progress(start, message)
        device = torch.device("cpu")
        probabilities = predict_probabilities(
            model,
            volume,
            device,
            overlap=overlap,
            sw_batch_size=1,
            tta=tta,
            progress=scaled,
            should_cancel=should_cancel,
            mode=mode,
        )
    return probabilities, str(device)


def segment_images(
    images: Mapping[str, sitk.Image],
    loaded: LoadedModel,
    *,
    device: str = "auto",
    tta: bool = False,
    register: Union[bool, str] = "auto",
    skull_strip: str = "auto",
    label_convention: str = "brats2020",
    overlap: float = 0.5,
    sw_batch_size: Optional[int] = None,
    postprocessing: Optional[PostprocessingSettings] = None,
    progress: ProgressCallback = None,
    should_cancel: Optional[Callable[[], bool]] = None,
    keep_probabilities: bool = False,
    uncertainty: bool = False,
    inference: str = "auto",
    release_inputs: bool = False,
    raw_scan_model: str = "auto",
) -> SegmentationResult:
    """Segment four images already in memory.

    Args:
        images: ``t1``, ``t1ce``, ``t2``, ``flair`` -> ``float32`` images (left unchanged).
        loaded: the model (from :func:`~EoFormerSegmentationLib.models.load_checkpoint`).
        device: ``auto`` (CUDA if available), ``cpu`` or ``cuda``.
        tta: average the predictions of the 8 flips along x, y and z (8 times slower).
        register: rigidly align T1, T2 and FLAIR to the T1ce first (mutual information):
            ``auto`` (default) when a sequence's grid differs from the T1ce's, ``on`` / True
            always, ``off`` / False never.
        skull_strip: brain extraction before normalisation: ``auto`` (default) when a
            sequence is not skull-stripped, ``on`` always, ``off`` never.
        label_convention: ``brats2020`` (ET = 4) or ``brats2023`` (ET = 3) for the label map.
        overlap: sliding-window overlap fraction.
        sw_batch_size: windows per forward pass (default 1 on CPU, 4 on CUDA).
        postprocessing: thresholds and cleanup (``None``: the settings the model card
            recommends, else the defaults of :class:`PostprocessingSettings`).
        progress: called with (fraction 0-1, message).
        should_cancel: polled during the work; returning True raises ``Cancelled``.
        keep_probabilities: keep the probabilities in the result (memory: 12 bytes per
            T1ce voxel).
        uncertainty: also compute the uncertainty map and its per-region summary (from the
            same probabilities: with ``tta`` their mean over the flips; no extra network pass).
        release_inputs: empty ``images`` (a dict the caller does not need any more) once
            they are resampled, to bound the memory of fine native grids.
        inference: ``auto`` (``whole`` on the CPU, ``window`` on a GPU), ``window``
            (overlapping 128³ windows) or ``whole`` (the cropped brain in one pass when it
            fits, see :mod:`~EoFormerSegmentationLib.inference`).
        raw_scan_model: ``auto`` (default): when the scans had to be co-registered or
            skull-stripped here (raw scans, not BraTS-prepared) and ``loaded`` has a
            companion model for raw scans, that model segments them; ``off``: ``loaded``
            segments every scan.

    Returns:
        A :class:`SegmentationResult` on the T1ce's grid.
    """
    if label_convention not in CONVENTIONS:
        raise InputError(f"--label-convention {label_convention}: expected one of {CONVENTIONS}")
    register, skull_strip = _checked_modes(register, skull_strip)
    if raw_scan_model not in RAW_SCAN_MODEL_MODES:
        raise InputError(
            f"--raw-scan-model {raw_scan_model}: expected one of {', '.join(RAW_SCAN_MODEL_MODES)}"
        )
    stages = _Stages(progress)
    notes: List[str] = []
    reference = images["t1ce"]
    if release_inputs:
        # only the T1ce's geometry is needed after resampling: on a fine native grid the four
        # inputs are most of the memory (4 x 285 MB at 0.5 mm)
        reference = sitk.Image(reference.GetSize(), sitk.sitkUInt8)
        reference.CopyInformation(images["t1ce"])
    prepared = _prepare(
        images, register, skull_strip, device, stages, should_cancel, release_inputs
    )
    volume, grid, brain = prepared.volume, prepared.grid, prepared.brain
    processing: Dict[str, Any] = dict(prepared.processing)
    notes.extend(prepared.notes)
    del prepared
    loaded = _network_model(loaded, processing, raw_scan_model, notes)
    stages.start("preprocess", 0.23, "normalising intensities")
    box = brain_bounding_box(volume, margin=8)
    normalized = normalize_intensity(volume)[(slice(None), *box)]
    padded, undo = pad_to_multiple(normalized, 16)
    del volume

    stages.start("network", 0.25, "running the network")
    probabilities_padded, device_used = _run_network(
        loaded,
        padded,
        device,
        tta,
        overlap,
        sw_batch_size,
        progress,
        should_cancel,
        notes,
        mode=inference,
    )
    processing["inference"] = inference
    stages.start("postprocess", 0.86, "post-processing")
    probabilities = np.zeros((3, *grid.GetSize()), dtype=np.float32)
    probabilities[(slice(None), *box)] = probabilities_padded[undo]
    if brain is not None:
        probabilities *= brain.mask[None]  # no tumor outside the extracted brain
    # Back onto the T1ce grid only where there may be tumor: on a fine native grid (0.5 mm:
    # 8 times the voxels of the network grid) the whole volume would not fit in memory.
    window = _tumor_window(probabilities, grid, reference)
    probabilities_window = np.stack(
        [
            image_to_array(resample_onto(array_to_image(probabilities[channel], grid), window.grid))
            for channel in range(3)
        ]
    )
    del probabilities
    voxel_volume_ml = float(np.prod(reference.GetSpacing())) / 1000.0
    if postprocessing is None:
        postprocessing = PostprocessingSettings.from_card(loaded.card)
    processing["postprocessing"] = postprocessing.to_json()
    # masks on the window only; full-size arrays are made once, as the output needs them
    masks_window = postprocess_regions(probabilities_window, voxel_volume_ml, postprocessing)
    whole = np.zeros(reference.GetSize(), dtype=bool)
    whole[window.slices[1:]] = masks_window[0]
    notes.extend(plausibility_warnings(whole[None], voxel_volume_ml))
    del whole
    probabilities_reference = None
    if keep_probabilities or uncertainty:
        probabilities_reference = np.zeros((3, *reference.GetSize()), dtype=np.float32)
        probabilities_reference[window.slices] = probabilities_window
    uncertainty_image, uncertainty_summary = None, None
    if uncertainty:
        from EoFormerSegmentationLib.uncertainty import uncertainty_map
        from EoFormerSegmentationLib.uncertainty import uncertainty_summary as summarize

        uncertainty_image = array_to_image(uncertainty_map(probabilities_reference), reference)
        uncertainty_summary = summarize(probabilities_window, masks_window, voxel_volume_ml)
    label = np.zeros(reference.GetSize(), dtype=np.uint8)
    label[window.slices[1:]] = regions_to_labels(masks_window, label_convention)
    label_image = array_to_image(label, reference)
    del label
    et_value = ET_LABEL[label_convention]
    region_images = {
        "WT": sitk.Cast(label_image != 0, sitk.sitkUInt8),
        "TC": sitk.Cast((label_image == 1) | (label_image == et_value), sitk.sitkUInt8),
        "ET": sitk.Cast(label_image == et_value, sitk.sitkUInt8),
    }
    volumes = {
        region: float(masks_window[index].sum()) * voxel_volume_ml
        for index, region in enumerate(REGIONS)
    }
    stages.stop()
    return SegmentationResult(
        label_map=label_image,
        regions=region_images,
        volumes_ml=volumes,
        timings_s=stages.timings,
        device=device_used,
        model_name=loaded.name,
        model_sha256=loaded.sha256,
        convention=label_convention,
        notes=notes,
        processing=processing,
        probabilities=probabilities_reference if keep_probabilities else None,
        uncertainty=uncertainty_image,
        uncertainty_summary=uncertainty_summary,
    )


@dataclass
class PreparedVolume:
    """The four sequences as the network receives them, before intensity normalisation.

    Attributes:
        volume: ``(4, X, Y, Z)`` float32 on ``grid``, channels T1, T1ce, T2, FLAIR; zero
            outside the extracted brain when the brain was extracted.
        grid: the network grid (1 mm, RAS) over the T1ce.
        brain: the checked brain mask, or ``None`` when no extraction was needed.
        processing: what was done (registration, brain extraction), for the report.
        notes: warnings for the user.
    """

    volume: np.ndarray
    grid: sitk.Image
    brain: Optional[Any]
    processing: Dict[str, Any]
    notes: List[str]


def prepare_images(
    images: Mapping[str, sitk.Image],
    *,
    register: Union[bool, str] = "auto",
    skull_strip: str = "auto",
    device: str = "auto",
) -> PreparedVolume:
    """Co-register, resample onto the network grid and extract the brain, as
    :func:`segment_images` does before it normalises intensities.

    Training on raw scans uses it so that the network learns from exactly what it will be
    given. Arguments as for :func:`segment_images`.
    """
    register, skull_strip = _checked_modes(register, skull_strip)
    return _prepare(images, register, skull_strip, device, _Stages(None), None, False)


RAW_SCAN_MODEL_MODES = ("auto", "off")


def _network_model(
    loaded: LoadedModel, processing: Dict[str, Any], mode: str, notes: List[str]
) -> LoadedModel:
    """The model that segments these scans: ``loaded``, or its companion for raw scans when
    the scans were co-registered or skull-stripped here. Records the choice in ``processing``."""
    done_here = [
        step
        for step, key in (("co-registered", "registration"), ("skull-stripped", "brain_extraction"))
        if key in processing
    ]
    chosen, reason = loaded, "the scans were prepared already (co-registered, skull-stripped)"
    if done_here and mode == "auto":
        notes.extend(loaded.notes)
        if loaded.raw_scan_model is not None:
            chosen = loaded.raw_scan_model
            reason = (
                f"raw scans ({' and '.join(done_here)} here): segmented with {chosen.name}, "
                f"the model for raw scans that {loaded.name} names"
            )
            notes.append(reason)
    elif done_here:
        reason = f"raw scans ({' and '.join(done_here)} here), --raw-scan-model off"
    processing["model"] = {"name": chosen.name, "sha256": chosen.sha256, "why": reason}
    return chosen


def _checked_modes(register: Union[bool, str], skull_strip: str):
    from EoFormerSegmentationLib.brain_extraction import SKULL_STRIP_MODES
    from EoFormerSegmentationLib.registration import REGISTER_MODES

    register = {True: "on", False: "off"}.get(register, register)
    if register not in REGISTER_MODES:
        raise InputError(f"--register {register}: expected one of {', '.join(REGISTER_MODES)}")
    if skull_strip not in SKULL_STRIP_MODES:
        raise InputError(
            f"--skull-strip {skull_strip}: expected one of {', '.join(SKULL_STRIP_MODES)}"
        )
    return register, skull_strip


def _prepare(
    images: Mapping[str, sitk.Image],
    register: str,
    skull_strip: str,
    device: str,
    stages: _Stages,
    should_cancel: Optional[Callable[[], bool]],
    release_inputs: bool,
) -> PreparedVolume:
    from EoFormerSegmentationLib.registration import needs_registration

    notes: List[str] = []
    processing: Dict[str, Any] = {}
    reference = images["t1ce"]
    grid = network_grid(reference)

    transforms: Dict[str, Optional[sitk.Transform]] = {key: None for key in SEQUENCES}
    to_register = [
        key
        for key in ("t1", "t2", "flair")
        if register == "on" or (register == "auto" and needs_registration(reference, images[key]))
    ]
    if to_register:
        from EoFormerSegmentationLib.registration import describe_transform, register_rigid

        registration: Dict[str, Any] = {}
        for index, key in enumerate(to_register):
            _check_cancel(should_cancel)
            stages.start("register", 0.05 + 0.05 * index, f"registering {key} to t1ce")
            transforms[key] = register_rigid(reference, images[key])
            registration[key] = describe_transform(transforms[key], key, reference)
            notes.extend(registration[key]["warnings"])
        processing["registration"] = registration

    stages.start("resample", 0.2, "resampling onto the network grid")
    volume = np.stack(
        [
            image_to_array(resample_onto(images[key], grid, transform=transforms[key]))
            for key in SEQUENCES
        ]
    )
    if release_inputs:
        images.clear()
    brain = _brain_mask(volume, grid, skull_strip, device, stages, should_cancel)
    if brain is not None:
        processing["brain_extraction"] = brain.report()
        notes.extend(brain.warnings)
        volume *= brain.mask[None]
    return PreparedVolume(volume, grid, brain, processing, notes)


@dataclass
class _TumorWindow:
    """The part of the T1ce grid where the network saw possible tumor."""

    grid: sitk.Image
    slices: tuple  # (channels, x, y, z) slices of the T1ce-grid arrays


TUMOR_PROBABILITY_FLOOR = 1e-3
"""Probabilities below this are taken as 0 outside the tumor's window on the T1ce grid."""


def _tumor_window(probabilities: np.ndarray, grid: sitk.Image, reference: sitk.Image):
    """The box of the T1ce grid covering every network-grid voxel with a probability of at
    least :data:`TUMOR_PROBABILITY_FLOOR`, with a 2-voxel margin; a 1-voxel box when none."""
    possible = probabilities.max(axis=0) >= TUMOR_PROBABILITY_FLOOR
    size = np.asarray(reference.GetSize())
    if not possible.any():
        low, high = np.zeros(3, int), np.ones(3, int)
    else:
        points = np.argwhere(possible)
        first, last = points.min(axis=0) - 1.0, points.max(axis=0) + 1.0
        corners = [
            reference.TransformPhysicalPointToContinuousIndex(
                grid.TransformContinuousIndexToPhysicalPoint([float(c[axis]) for axis in range(3)])
            )
            for c in (np.where(np.array(bits, bool), last, first) for bits in np.ndindex(2, 2, 2))
        ]
        low = np.clip(np.floor(np.min(corners, axis=0)).astype(int) - 2, 0, size - 1)
        high = np.clip(np.ceil(np.max(corners, axis=0)).astype(int) + 3, low + 1, size)
    window = sitk.Image([int(n) for n in high - low], sitk.sitkUInt8)
    window.SetSpacing(reference.GetSpacing())
    window.SetDirection(reference.GetDirection())
    window.SetOrigin(reference.TransformIndexToPhysicalPoint([int(i) for i in low]))
    slices = (slice(None), *(slice(int(a), int(b)) for a, b in zip(low, high)))
    return _TumorWindow(grid=window, slices=slices)


def _check_cancel(should_cancel: Optional[Callable[[], bool]]) -> None:
    if should_cancel is not None and should_cancel():
        from EoFormerSegmentationLib.errors import Cancelled

        raise Cancelled("segmentation cancelled")


def _brain_mask(
    volume: np.ndarray,
    grid: sitk.Image,
    mode: str,
    device: str,
    stages: _Stages,
    should_cancel: Optional[Callable[[], bool]],
):
    """The checked brain mask on the network grid, or ``None`` when no stripping is needed.

    ``auto`` strips when any sequence looks like a head rather than a skull-stripped brain.
    The mask comes from the T1; when the T1 gives an implausible mask, from the T1ce.
    """
    from EoFormerSegmentationLib.brain_extraction import (
        check_brain_mask,
        extract_brain,
        looks_skull_stripped,
    )

    if mode == "off":
        return None
    voxel_volume_ml = float(np.prod(grid.GetSpacing())) / 1000.0
    if mode == "auto" and all(
        looks_skull_stripped(volume[index], voxel_volume_ml) for index in range(len(SEQUENCES))
    ):
        return None
    _check_cancel(should_cancel)
    stages.start("brain_extraction", 0.21, "extracting the brain (skull stripping)")
    from EoFormerSegmentationLib.inference import select_device

    network_device = select_device(device).type
    first_error: Optional[InputError] = None
    for key in ("t1", "t1ce"):
        index = SEQUENCES.index(key)
        try:
            return check_brain_mask(extract_brain(volume[index], source=key, device=network_device))
        except InputError as error:
            first_error = first_error or error
    raise first_error


def _check_output(output: Path, inputs: Mapping[str, PathLike], overwrite: bool) -> str:
    kind = output_kind(output)
    for key, path in inputs.items():
        if Path(path).exists() and output.exists() and os.path.samefile(output, path):
            raise InputError(f"{output}: the output is the {key} input; choose another file")
    if output.exists() and not overwrite:
        raise InputError(f"{output}: the output file exists; use --overwrite to replace it")
    if output.exists() and output.is_dir():
        raise InputError(f"{output}: is a folder; give an output file name")
    if not output.parent.exists():
        raise InputError(f"{output}: the folder {output.parent} does not exist")
    check_writable_folder(output.parent, str(output))
    return kind


def write_result(result: SegmentationResult, output: PathLike, overwrite: bool = False) -> Path:
    """Write a result atomically, as a Slicer segmentation or a label map by ``output``'s suffix.

    Sets ``result.output`` and ``result.timings_s["write"]`` (s).

    Args:
        result: what :func:`segment_images` returned.
        output: ``.seg.nrrd`` (three overlapping segments) or a label-map file (``.nii.gz``,
            ``.nii``, ``.nrrd``, ``.mha``) in ``result.convention``; its folder is created.
        overwrite: replace an existing file; when False an existing file is kept and
            ``OutputError`` is raised.

    Returns:
        ``output``.
    """
    output = Path(output)
    started = time.perf_counter()
    if output_kind(output) == "segmentation":
        write_seg_nrrd(
            output, result.regions, result.model_name, result.model_sha256, overwrite=overwrite
        )
    else:
        write_label_map(
            output,
            result.label_map,
            result.convention,
            result.model_name,
            result.model_sha256,
            overwrite=overwrite,
        )
    result.output = output
    result.timings_s["write"] = time.perf_counter() - started
    return output


def segment_files(
    t1: PathLike,
    t1ce: PathLike,
    t2: PathLike,
    flair: PathLike,
    output: Optional[PathLike] = None,
    *,
    model_path: Optional[PathLike] = None,
    model: Optional[LoadedModel] = None,
    device: str = "auto",
    tta: bool = False,
    register: Union[bool, str] = "auto",
    skull_strip: str = "auto",
    label_convention: str = "brats2020",
    overwrite: bool = False,
    overlap: float = 0.5,
    sw_batch_size: Optional[int] = None,
    postprocessing: Optional[PostprocessingSettings] = None,
    progress: ProgressCallback = None,
    should_cancel: Optional[Callable[[], bool]] = None,
    uncertainty_output: Optional[PathLike] = None,
    inference: str = "auto",
    raw_scan_model: str = "auto",
) -> SegmentationResult:
    """Segment four image files and (optionally) write the result.

    Args:
        t1, t1ce, t2, flair: image files or DICOM series folders (never modified).
        output: ``.seg.nrrd`` (Slicer segmentation with three overlapping segments) or a
            label-map file (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``); nothing is written
            when ``None``. Written atomically.
        model_path: checkpoint; the bundled model when ``None``.
        model: a model already loaded (a server segmenting many cases loads it once); used
            instead of ``model_path`` when given.
        overwrite: replace an existing ``output`` (refused otherwise).
        uncertainty_output: also write the uncertainty map (an image file on the T1ce grid,
            float32 bits 0-1); its summary goes into the report.
        Other arguments: see :func:`segment_images`.

    Returns:
        The :class:`SegmentationResult` (``output`` set when a file was written).

    Raises:
        InputError: bad input (named in the message); nothing is written then.
    """
    started = time.perf_counter()
    inputs = {"t1": t1, "t1ce": t1ce, "t2": t2, "flair": flair}
    if output is not None:
        output = Path(output)
        _check_output(output, inputs, overwrite)
    if uncertainty_output is not None:
        uncertainty_output = Path(uncertainty_output)
        if _check_output(uncertainty_output, inputs, overwrite) == "segmentation":
            raise InputError(
                f"{uncertainty_output}: the uncertainty map is an image (.nii.gz, .nrrd, .mha), "
                "not a .seg.nrrd segmentation"
            )
        if output is not None and uncertainty_output.resolve() == output.resolve():
            raise InputError(f"{uncertainty_output}: the uncertainty map would replace the output")
    if model is None and model_path is None:
        model_path = default_model_path()
        if model_path is None:
            raise InputError("no model given (--model) and no bundled model is installed")
    # the model first: a bad model file is refused before the images are read
    if progress is not None:
        progress(0.02, "loading the model")
    loaded = model if model is not None else load_checkpoint(model_path)
    load_seconds = time.perf_counter() - started
    read_started = time.perf_counter()
    images = read_sequences(inputs)
    read_seconds = time.perf_counter() - read_started
    result = segment_images(
        images,
        loaded,
        device=device,
        tta=tta,
        register=register,
        skull_strip=skull_strip,
        label_convention=label_convention,
        overlap=overlap,
        sw_batch_size=sw_batch_size,
        postprocessing=postprocessing,
        progress=progress,
        should_cancel=should_cancel,
        uncertainty=uncertainty_output is not None,
        inference=inference,
        release_inputs=True,
        raw_scan_model=raw_scan_model,
    )
    result.timings_s = {"read": read_seconds, "load_model": load_seconds, **result.timings_s}
    if uncertainty_output is not None:
        from EoFormerSegmentationLib.segmentation_file import write_uncertainty_map

        write_uncertainty_map(
            uncertainty_output,
            result.uncertainty,
            result.model_name,
            result.model_sha256,
            overwrite=overwrite,
        )
    if output is not None:
        if progress is not None:
            progress(0.97, f"writing {output.name}")
        try:
            write_result(result, output, overwrite=overwrite)
        except BaseException:
            if uncertainty_output is not None:
                from EoFormerSegmentationLib.files import remove_file

                remove_file(uncertainty_output)
            raise
    result.timings_s["total"] = time.perf_counter() - started
    if progress is not None:
        progress(1.0, "done")
    return result
