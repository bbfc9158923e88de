"""Training cases on disk: find them in a folder, check them, load them as arrays.

Recognised case folders (file names are matched case-insensitively; ``.nii.gz`` or ``.nii``):

===============================  ======================================================
layout                           files of case ``<case>``
===============================  ======================================================
BraTS 2020 / 2021                ``<case>_t1``, ``_t1ce``, ``_t2``, ``_flair``, ``_seg``
BraTS 2023                       ``<case>-t1n``, ``-t1c``, ``-t2w``, ``-t2f``, ``-seg``
plain                            ``t1``, ``t1ce``, ``t2``, ``flair``, ``seg*``
                                 (e.g. ``seg_consensus.nii.gz``)
written by the Slicer module     the four volumes named as above, in any format
                                 SimpleITK reads (``.nrrd``, ``.nii.gz``, ``.mha``), and a
                                 label map ``seg.nrrd``, or a Slicer segmentation
                                 ``*.seg.nrrd`` with segments NCR, ED, ET or WT, TC, ET
===============================  ======================================================

A data folder may be a case folder itself or hold case folders at any depth (up to
:data:`MAX_SEARCH_DEPTH` levels). Sub-folders without any sequence file (such as the
``algorithms/`` folder of a case) are ignored.

Loaded cases are arrays in the closest canonical RAS orientation (nibabel's
``as_closest_canonical``: the first array axis runs towards the patient's Right, the second
towards Anterior, the third towards Superior), channels in the order T1, T1ce, T2, FLAIR,
z-scored over the brain with :func:`~EoFormerSegmentationLib.preprocessing.normalize_intensity`.
Labels keep their BraTS values (1 NCR, 2 ED, 4 ET in BraTS 2020 or 3 ET in BraTS 2023);
Slicer segmentations are converted to BraTS 2020 labels (sub-region segments give their labels
directly; region segments give NCR = TC minus ET, ED = WT minus TC, ET = 4). They are read with
SimpleITK alone, which 3D Slicer ships.

SimpleITK is imported only when a case needs it (a ``.seg.nrrd`` or a non-NIfTI volume), so
that training on NIfTI folders runs where SimpleITK is not installed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.labels import check_label_values, regions_to_labels
from EoFormerSegmentationLib.preprocessing import brain_bounding_box, normalize_intensity

__all__ = [
    "SEQUENCES",
    "SEQUENCE_ALIASES",
    "MAX_SEARCH_DEPTH",
    "CaseFiles",
    "LoadedCase",
    "find_case_files",
    "discover_cases",
    "load_case",
    "is_case_folder",
    "CropStream",
    "CaseCropStream",
    "stream_seed",
]

PathLike = Union[str, "os.PathLike[str]"]

SEQUENCES = ("t1", "t1ce", "t2", "flair")
"""Channel order of every image array: T1, T1ce (post-contrast), T2, FLAIR."""

SEQUENCE_ALIASES: Dict[str, str] = {
    "t1": "t1",
    "t1ce": "t1ce",
    "t2": "t2",
    "flair": "flair",
    # BraTS 2023 names
    "t1n": "t1",
    "t1c": "t1ce",
    "t2w": "t2",
    "t2f": "flair",
}
"""File-name token -> sequence, for the BraTS 2020/2021 and BraTS 2023 namings."""

MAX_SEARCH_DEPTH = 3
"""How many folder levels below a data folder are searched for case folders."""

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_OTHER_IMAGE_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
_SEGMENTATION_SUFFIX = ".seg.nrrd"
_TOKEN_SEPARATORS = re.compile(r"[_\-.\s]+")


@dataclass(frozen=True)
class CaseFiles:
    """The files of one training case.

    Attributes:
        name: case name (its folder's name).
        folder: the case folder.
        images: sequence name (``t1``, ``t1ce``, ``t2``, ``flair``) -> image file.
        label: label file (a label map, or a Slicer ``.seg.nrrd``); ``None`` for an
            unlabelled case.
    """

    name: str
    folder: Path
    images: Dict[str, Path]
    label: Optional[Path] = None

    @property
    def needs_simpleitk(self) -> bool:
        """True when a file is not NIfTI (a ``.seg.nrrd`` or another image format)."""
        files = list(self.images.values()) + ([self.label] if self.label else [])
        return any(_image_suffix(path) not in _NIFTI_SUFFIXES for path in files)

    def describe(self) -> Dict[str, object]:
        """JSON-serialisable record of the case for model cards."""
        return {
            "name": self.name,
            "folder": str(self.folder),
            "images": {key: path.name for key, path in self.images.items()},
            "label": self.label.name if self.label else None,
        }


@dataclass
class LoadedCase:
    """A case in memory, ready for the training transforms.

    Attributes:
        name: case name.
        image: ``float32`` array ``(4, X, Y, Z)``: T1, T1ce, T2, FLAIR, z-scored over the brain,
            0 outside it, RAS axis order, cropped to the brain's bounding box when requested.
        label: ``uint8`` BraTS label map ``(X, Y, Z)`` on the same grid (ET is 4 or 3, as in
            the file), or ``None`` for an unlabelled case.
        affine: 4x4 voxel-to-RAS (mm) matrix of the returned arrays.
        metadata: free-form details (source files, crop box).
    """

    name: str
    image: np.ndarray
    label: Optional[np.ndarray]
    affine: np.ndarray
    metadata: Dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> Dict[str, object]:
        """The ``{"image", "label", "name"}`` dict that the training transforms take."""
        return {"image": self.image, "label": self.label, "name": self.name}


def _image_suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in (_SEGMENTATION_SUFFIX,) + _NIFTI_SUFFIXES + _OTHER_IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return ""


def _classify(path: Path) -> Tuple[str, str]:
    """``("sequence", <name>)``, ``("label", "")`` or ``("", "")`` for an unrelated file."""
    suffix = _image_suffix(path)
    if not suffix or path.name.startswith("."):
        return "", ""
    if suffix == _SEGMENTATION_SUFFIX:
        return "label", ""
    stem = path.name[: -len(suffix)].lower()
    tokens = [token for token in _TOKEN_SEPARATORS.split(stem) if token]
    if not tokens:
        return "", ""
    last = tokens[-1]
    # "segm": the one BraTS 2020 case whose label file is named ..._Segm.nii
    if last in ("seg", "segm") or stem.startswith("seg"):
        return "label", ""
    if last in SEQUENCE_ALIASES:
        return "sequence", SEQUENCE_ALIASES[last]
    return "", ""


def _files_by_role(folder: Path) -> Tuple[Dict[str, List[Path]], List[Path]]:
    sequences: Dict[str, List[Path]] = {}
    labels: List[Path] = []
    try:
        entries = sorted(folder.iterdir())
    except OSError as error:
        raise InputError(f"{folder}: cannot list the folder ({error})") from error
    for path in entries:
        if not path.is_file():
            continue
        role, sequence = _classify(path)
        if role == "sequence":
            sequences.setdefault(sequence, []).append(path)
        elif role == "label":
            labels.append(path)
    return sequences, labels


def is_case_folder(folder: PathLike) -> bool:
    """True when ``folder`` directly holds at least one recognisable sequence file."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    sequences, _ = _files_by_role(folder)
    return bool(sequences)


def find_case_files(folder: PathLike, require_label: bool = True) -> CaseFiles:
    """Check one case folder and name its files.

    Args:
        folder: the case folder.
        require_label: raise when the case has no label file.

    Returns:
        The case's :class:`CaseFiles`.

    Raises:
        InputError: a sequence is missing or given twice, the label is missing (when required)
            or ambiguous. The message names the case.
    """
    folder = Path(folder)
    name = folder.name
    if not folder.is_dir():
        raise InputError(f"case {name}: {folder} is not a folder")
    sequences, labels = _files_by_role(folder)
    missing = [sequence for sequence in SEQUENCES if sequence not in sequences]
    if missing:
        found = ", ".join(sorted(path.name for paths in sequences.values() for path in paths))
        raise InputError(
            f"case {name} ({folder}): missing the {', '.join(missing)} image"
            f"{'s' if len(missing) > 1 else ''} (found: {found or 'no image'}); expected "
            "<case>_t1/_t1ce/_t2/_flair (BraTS 2020/2021), <case>-t1n/-t1c/-t2w/-t2f "
            "(BraTS 2023) or t1/t1ce/t2/flair"
        )
    duplicated = {seq: paths for seq, paths in sequences.items() if len(paths) > 1}
    if duplicated:
        sequence, paths = next(iter(duplicated.items()))
        raise InputError(
            f"case {name} ({folder}): more than one {sequence} image "
            f"({', '.join(path.name for path in paths)})"
        )
    label = None
    if labels:
        exact = [path for path in labels if _classify_exact_seg(path)]
        candidates = exact or labels
        if len(candidates) > 1:
            raise InputError(
                f"case {name} ({folder}): more than one label file "
                f"({', '.join(path.name for path in candidates)}); keep one"
            )
        label = candidates[0]
    elif require_label:
        raise InputError(
            f"case {name} ({folder}): no label file (expected <case>_seg.nii.gz, "
            "<case>-seg.nii.gz, seg*.nii.gz or a Slicer *.seg.nrrd)"
        )
    images = {sequence: sequences[sequence][0] for sequence in SEQUENCES}
    return CaseFiles(name=name, folder=folder, images=images, label=label)


def _classify_exact_seg(path: Path) -> bool:
    suffix = _image_suffix(path)
    if suffix == _SEGMENTATION_SUFFIX:
        return True
    stem = path.name[: -len(suffix)].lower()
    return _TOKEN_SEPARATORS.split(stem)[-1] in ("seg", "segm")


def _case_folders(root: Path, depth: int) -> Iterable[Path]:
    if is_case_folder(root):
        yield root
        return
    if depth <= 0:
        return
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            yield from _case_folders(child, depth - 1)


def discover_cases(
    folders: Union[PathLike, Sequence[PathLike]], require_label: bool = True
) -> List[CaseFiles]:
    """Every case in one or more data folders, checked.

    Args:
        folders: data folders; each is a case folder or holds case folders (searched
            :data:`MAX_SEARCH_DEPTH` levels deep).
        require_label: every case must have a label (training, fine-tuning).

    Returns:
        The cases, in folder order then name order.

    Raises:
        InputError: a folder does not exist or has no recognisable case; a case is incomplete
            (the message names the case); two cases have the same name.
    """
    if isinstance(folders, (str, os.PathLike)):
        folders = [folders]
    cases: List[CaseFiles] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"{folder}: data folder not found")
        found = [
            find_case_files(case_folder, require_label=require_label)
            for case_folder in _case_folders(folder, MAX_SEARCH_DEPTH)
        ]
        if not found:
            raise InputError(
                f"{folder}: no recognisable cases (a case is a folder with T1, T1ce, T2 and "
                "FLAIR images named <case>_t1/_t1ce/_t2/_flair (BraTS 2020/2021), "
                "<case>-t1n/-t1c/-t2w/-t2f (BraTS 2023) or t1/t1ce/t2/flair, plus a label)"
            )
        cases.extend(found)
    seen: Dict[Path, CaseFiles] = {}
    for case in cases:
        key = case.folder.resolve()
        if key in seen:
            raise InputError(f"case {case.name}: given twice ({case.folder})")
        seen[key] = case
    return cases


def _label_array(raw: np.ndarray, source: str) -> np.ndarray:
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)):
            raise InputError(f"{source}: the label map has NaN or infinite values")
        rounded = np.rint(raw)
        if not np.array_equal(rounded, raw):
            raise InputError(
                f"{source}: the label map has non-integer values (expected BraTS labels "
                "0, 1, 2 and 4 or 3)"
            )
        raw = rounded
    if raw.size and (raw.min() < 0 or raw.max() > 255):
        check_label_values(raw, source)  # raises with the offending values
    label = raw.astype(np.uint8)
    check_label_values(label, source)
    return label


def _load_nifti_case(case: CaseFiles) -> Tuple[np.ndarray, Optional[np.ndarray], np.ndarray]:
    import nibabel as nib

    arrays = []
    reference_affine = None
    reference_shape = None
    for sequence in SEQUENCES:
        path = case.images[sequence]
        try:
            image = nib.as_closest_canonical(nib.load(str(path)))
            data = np.asarray(image.dataobj, dtype=np.float32)
        except Exception as error:  # nibabel raises many types for broken files
            raise InputError(f"case {case.name}: cannot read {path.name} ({error})") from error
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise InputError(f"case {case.name}: {path.name} is not a 3D image ({data.shape})")
        if not np.all(np.isfinite(data)):
            raise InputError(f"case {case.name}: {path.name} has NaN or infinite voxels")
        if reference_shape is None:
            reference_shape, reference_affine = data.shape, image.affine
        elif data.shape != reference_shape or not np.allclose(
            image.affine, reference_affine, atol=1e-3
        ):
            raise InputError(
                f"case {case.name}: {path.name} is not on the grid of "
                f"{case.images[SEQUENCES[0]].name} (training needs co-registered images "
                "resampled to one grid, as in BraTS)"
            )
        arrays.append(data)
    label = None
    if case.label is not None:
        source = f"case {case.name}: {case.label.name}"
        try:
            label_image = nib.as_closest_canonical(nib.load(str(case.label)))
            raw = np.asarray(label_image.dataobj)
        except Exception as error:
            raise InputError(f"{source}: cannot read the label ({error})") from error
        if raw.ndim == 4 and raw.shape[3] == 1:
            raw = raw[..., 0]
        if raw.shape != reference_shape:
            raise InputError(
                f"{source}: label size {raw.shape} differs from the images' {reference_shape}"
            )
        label = _label_array(raw, source)
    return np.stack(arrays), label, np.asarray(reference_affine, dtype=np.float64)


def _ras_grid_of(reference, spacing_mm: float = 1.0):
    """An axis-aligned RAS grid (``spacing_mm`` isotropic) covering ``reference``'s extent."""
    import SimpleITK as sitk

    size = reference.GetSize()
    corners = []
    for i in (0, size[0] - 1):
        for j in (0, size[1] - 1):
            for k in (0, size[2] - 1):
                corners.append(reference.TransformContinuousIndexToPhysicalPoint((i, j, k)))
    corners = np.asarray(corners)  # LPS, mm
    # RAS axes expressed in LPS: x towards Right is -L, y towards Anterior is -P.
    direction = np.diag([-1.0, -1.0, 1.0])
    in_grid_axes = corners @ direction  # coordinates along the grid's axes
    low = in_grid_axes.min(axis=0)
    high = in_grid_axes.max(axis=0)
    grid_size = [int(np.floor((h - lo) / spacing_mm)) + 1 for lo, h in zip(low, high)]
    origin = direction @ low
    grid = sitk.Image(grid_size, sitk.sitkUInt8)
    grid.SetSpacing([spacing_mm] * 3)
    grid.SetDirection(direction.flatten().tolist())
    grid.SetOrigin(origin.tolist())
    return grid


def _sitk_to_ras_array(image) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(image).transpose(2, 1, 0)


def _affine_of(grid) -> np.ndarray:
    """Voxel-to-RAS matrix of a SimpleITK grid (SimpleITK works in LPS)."""
    direction = np.asarray(grid.GetDirection()).reshape(3, 3)
    spacing = np.asarray(grid.GetSpacing())
    origin = np.asarray(grid.GetOrigin())
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = lps_to_ras @ direction @ np.diag(spacing)
    affine[:3, 3] = lps_to_ras @ origin
    return affine


def _load_sitk_case(case: CaseFiles) -> Tuple[np.ndarray, Optional[np.ndarray], np.ndarray]:
    """Cases written by the module: any format, resampled onto a 1 mm RAS grid over T1ce."""
    import SimpleITK as sitk

    images = {}
    for sequence in SEQUENCES:
        path = case.images[sequence]
        try:
            image = sitk.ReadImage(str(path), sitk.sitkFloat32)
        except RuntimeError as error:
            raise InputError(f"case {case.name}: cannot read {path.name} ({error})") from error
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"case {case.name}: {path.name} is not a 3D scalar image")
        images[sequence] = image
    grid = _ras_grid_of(images["t1ce"])
    arrays = []
    for sequence in SEQUENCES:
        resampled = sitk.Resample(
            images[sequence], grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32
        )
        data = _sitk_to_ras_array(resampled).astype(np.float32)
        if not np.all(np.isfinite(data)):
            raise InputError(
                f"case {case.name}: {case.images[sequence].name} has NaN or infinite voxels"
            )
        arrays.append(data)
    label = None
    if case.label is not None:
        source = f"case {case.name}: {case.label.name}"
        if case.label.name.lower().endswith(_SEGMENTATION_SUFFIX):
            label = _label_from_segmentation(case.label, grid, source)
        else:
            try:
                label_image = sitk.ReadImage(str(case.label))
            except RuntimeError as error:
                raise InputError(f"{source}: cannot read the label ({error})") from error
            resampled = sitk.Resample(
                label_image, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0
            )
            label = _label_array(_sitk_to_ras_array(resampled), source)
    return np.stack(arrays), label, _affine_of(grid)


def _label_from_segmentation(path: Path, grid, source: str) -> np.ndarray:
    """BraTS 2020 labels from a Slicer segmentation with NCR / ED / ET or WT / TC / ET segments."""
    import SimpleITK as sitk

    from EoFormerSegmentationLib.segmentation_file import read_seg_nrrd

    try:
        segments = read_seg_nrrd(path, require_all=False)
    except InputError:
        raise
    except Exception as error:
        raise InputError(f"{source}: cannot read the segmentation ({error})") from error
    present = [region for region in ("WT", "TC", "ET") if region in segments]
    if not present:
        names = ", ".join(sorted(segments)) or "none"
        raise InputError(
            f"{source}: no Whole tumor (WT), Tumor core (TC) or Enhancing tumor (ET) segment "
            f"(segments found: {names})"
        )
    masks = []
    for region in ("WT", "TC", "ET"):
        if region not in segments:
            masks.append(np.zeros(grid.GetSize(), dtype=bool))
            continue
        resampled = sitk.Resample(
            segments[region], grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0
        )
        masks.append(_sitk_to_ras_array(resampled) > 0)
    # regions_to_labels nests ET within TC within WT: NCR = TC - ET, ED = WT - TC.
    return regions_to_labels(np.stack(masks), convention="brats2020")


def load_case(case: CaseFiles, crop_to_brain: bool = True, margin: int = 4) -> LoadedCase:
    """Read, check and normalise one case.

    Args:
        case: the case's files (from :func:`discover_cases`).
        crop_to_brain: crop to the bounding box of the brain (voxels non-zero in any channel)
            plus ``margin`` voxels, which saves memory and time.
        margin: voxels kept around the brain, per side.

    Returns:
        A :class:`LoadedCase` (RAS axis order, z-scored images, BraTS labels).

    Raises:
        InputError: unreadable files, images not on one grid, labels outside the BraTS
            convention, all-zero images. The message names the case and the file.
    """
    if case.needs_simpleitk:
        images, label, affine = _load_sitk_case(case)
    else:
        images, label, affine = _load_nifti_case(case)
    for index, sequence in enumerate(SEQUENCES):
        if not np.any(images[index]):
            raise InputError(f"case {case.name}: the {sequence} image is all zero")
    box = tuple(slice(0, n) for n in images.shape[1:])
    if crop_to_brain:
        brain_box = brain_bounding_box(images, margin=margin)
        outside = np.zeros(images.shape[1:], dtype=bool) if label is None else label > 0
        outside[brain_box] = False
        # tumour labelled outside the images' non-zero voxels: keep the whole volume
        if not outside.any():
            box = brain_box
    images = images[(slice(None),) + box]
    if label is not None:
        label = label[box]
    affine = affine.copy()
    affine[:3, 3] = affine[:3, 3] + affine[:3, :3] @ np.array([s.start for s in box], float)
    return LoadedCase(
        name=case.name,
        image=normalize_intensity(images),
        label=None if label is None else np.ascontiguousarray(label),
        affine=affine,
        metadata={"files": case.describe(), "crop_box": [(s.start, s.stop) for s in box]},
    )


def stream_seed(*parts: int) -> int:
    """A 32-bit seed mixed from integers (base seed, rank, worker, restart offset...)."""
    return int(np.random.SeedSequence([int(part) for part in parts]).generate_state(1)[0])


class CropStream(IterableDataset):
    """Endless stream of training crops, split over distributed ranks and loader workers.

    Cases are numbered by a global index ``k = start_case, start_case + 1, ...``; process
    ``rank`` of ``world_size``, DataLoader worker ``w`` of ``W``, reads the indices with
    ``k % (world_size * W) == rank * W + w``, so that no two workers or ranks read the same
    case at the same time (what ``DistributedSampler`` does for map-style datasets). Each
    case is turned into ``crops_per_case`` crops by ``transform``; a small shuffle buffer mixes
    crops of different cases within a batch.

    Subclasses define :meth:`case_at` (the case dictionary of a global index).

    Args:
        transform: callable returning a list of crop dictionaries for one case dictionary
            (:func:`~EoFormerSegmentationLib.training.transforms.training_transforms`).
        seed: base seed of the augmentations and the case order.
        rank: this process's rank (``RANK`` of ``torchrun``).
        world_size: number of processes.
        start_case: global index of the first case (to continue a stream after ``--resume``).
        shuffle_buffer: crops held to mix the order (0 or 1: no mixing).
    """

    def __init__(
        self,
        transform: Callable[[Dict[str, Any]], List[Dict[str, Any]]],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_case: int = 0,
        shuffle_buffer: int = 8,
    ) -> None:
        super().__init__()
        self.transform = transform
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.start_case = int(start_case)
        self.shuffle_buffer = int(shuffle_buffer)

    def case_at(self, index: int) -> Dict[str, Any]:
        """The ``{"image", "label", "name"}`` dictionary of global case index ``index``."""
        raise NotImplementedError

    def _partition(self) -> Tuple[int, int]:
        worker = get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker else (0, 1)
        return self.rank * workers + worker_id, self.world_size * workers

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        import warnings

        # cases without tumour fall back to random crops; MONAI warns about each of them
        warnings.filterwarnings("ignore", message="Num foregrounds 0")
        partition, partitions = self._partition()
        seed = stream_seed(self.seed, partition, self.start_case)
        if hasattr(self.transform, "set_random_state"):
            self.transform.set_random_state(seed=seed)
        rng = np.random.default_rng(seed)
        buffer: List[Dict[str, Any]] = []
        index = self.start_case + (partition - self.start_case) % partitions
        while True:
            for transformed in self.transform(self.case_at(index)):
                crop = {key: transformed[key] for key in ("image", "label", "name")}
                if self.shuffle_buffer <= 1:
                    yield crop
                    continue
                buffer.append(crop)
                if len(buffer) >= self.shuffle_buffer:
                    yield buffer.pop(int(rng.integers(len(buffer))))
            index += partitions


class CaseCropStream(CropStream):
    """Training crops from cases on disk, visited in a new random order every epoch.

    Args:
        cases: the training cases (from :func:`discover_cases`).
        transform: see :class:`CropStream`.
        cache: keep loaded cases in memory (per worker): for a few cases (fine-tuning),
            not for BraTS-sized sets.
        carvemix: probability that a visited case receives another case's tumour
            (:func:`~EoFormerSegmentationLib.training.carvemix.carve_mix`, donor drawn at
            random among the other cases); 0 turns it off.
        **kwargs: ``seed``, ``rank``, ``world_size``, ``start_case``, ``shuffle_buffer`` of
            :class:`CropStream`.
    """

    def __init__(
        self,
        cases: Sequence[Union[CaseFiles, LoadedCase]],
        transform: Callable[[Dict[str, Any]], List[Dict[str, Any]]],
        cache: bool = False,
        carvemix: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(transform, **kwargs)
        if not cases:
            raise InputError("no training cases")
        self.cases = list(cases)
        self.cache = cache
        self.carvemix = float(carvemix)
        self._loaded: Dict[int, LoadedCase] = {}
        self._order_epoch = -1
        self._order: np.ndarray = np.arange(len(self.cases))

    def _load(self, position: int) -> LoadedCase:
        case = self.cases[position]
        if isinstance(case, LoadedCase):
            return case
        if position in self._loaded:
            return self._loaded[position]
        loaded = load_case(case)
        if self.cache:
            self._loaded[position] = loaded
        return loaded

    def case_at(self, index: int) -> Dict[str, Any]:
        epoch, position = divmod(index, len(self.cases))
        if epoch != self._order_epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self.cases))
            self._order_epoch = epoch
        chosen = int(self._order[position])
        target = self._load(chosen)
        if self.carvemix > 0 and len(self.cases) > 1:
            rng = np.random.default_rng([self.seed, index, 0xCA7])
            if rng.random() < self.carvemix:
                return self._mixed(target, chosen, rng)
        return target.as_dict()

    def _mixed(self, target: LoadedCase, position: int, rng: np.random.Generator) -> Dict:
        """``target`` with the tumour of another case, or unchanged when they cannot mix."""
        from EoFormerSegmentationLib.training.carvemix import carve_mix

        others = [other for other in range(len(self.cases)) if other != position]
        mixed = carve_mix(target, self._load(int(rng.choice(others))), rng)
        return target.as_dict() if mixed is None else mixed
