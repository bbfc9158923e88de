"""Turn labelled BraTS cases into scans as a hospital archive holds them, with a known answer.

BraTS cases are skull-stripped, co-registered and resampled to 1 mm; hospital scans are not.
This script makes, from each labelled case, the scans a radiologist would load, with the
reference label on the T1ce's grid, in a case folder of the plain layout (``t1.nii.gz``,
``t1ce.nii.gz``, ``t2.nii.gz``, ``flair.nii.gz``, ``seg.nii.gz``) that ``eoformer evaluate
--cases`` and ``tools/evaluate_real_cases.py`` read:

``--mode thick --thickness T``
    every sequence acquired in axial slabs of T mm (averaged over the slab) on a
    1 x 1 x T mm grid: what a 2-D acquisition looks like, with nothing else changed.

``--mode raw``
    the case's brain placed into a real head with skull and scalp (the head, stretched to fit,
    around the case's brain, which keeps its own voxels; where the head's own brain, found
    with deepbet, reaches beyond the case's, it stays, as do the skull, scalp, fat and neck),
    then each sequence acquired on its own grid, as on a scanner:
    T1ce axial 0.9 x 0.9 x 5.5 mm slabs; T1 3-D 1 mm after 4 degrees and 3 mm of patient
    motion; T2 axial 0.45 x 0.45 x 5 mm slabs after 3 degrees and 2 mm of motion; FLAIR
    oblique (slabs tilted 6 degrees) 0.9 x 0.9 x 6 mm after 2 degrees of motion. Intensities
    are written as 16-bit integers. The label follows the T1ce (no motion), so the answer is
    known exactly on the grid the output is written on.

``--protocol isotropic`` (every sequence 3-D at 1 mm, no motion) and ``--protocol axial
--thickness T`` (every sequence in axial slabs of T mm, no motion) keep the head but leave out
the rest of the clinical protocol: beside ``--mode thick`` (slabs without a head) they tell
what the head and its brain extraction cost, and what the slabs cost with a head around them.

For training on raw-looking scans, ``--seed S`` draws each case's protocol at random (T1ce in
3-7 mm slabs, axial mostly, sometimes coronal or sagittal, tilted up to 10 degrees; T1 3-D or
2-D; T2 and FLAIR 3-7 mm; up to 5 degrees and 4 mm of motion between sequences),
``--head random`` puts each case into one of the real heads of ``../shared/data/raw-heads``
whose licence lets a model trained on it be shipped (a non-commercial head is left out),
``--variants N`` makes N such cases of each, and ``--prepared`` writes them as the engine
prepares them for the network (registered, 1 mm, brain extracted) with the reference exact on
that grid: case folders that ``eoformer train --data`` reads.

``--carry DIR`` carries other label maps of the same cases (``DIR/<case>.nii.gz``, on the
case's own grid: for instance the model's predictions on the cases as BraTS prepared them)
onto the new grid exactly as the reference is carried, into ``--carry-out``
(``<case>_<suffix>.nii.gz``). Scored against the carried reference, they tell how much of a
loss in Dice comes from judging on the coarser grid rather than from the raw scans.

Run from the repository root::

    python tools/simulate_raw_cases.py --cases ../shared/data/brats/BraTS2021_00014 \\
        --mode raw --out runs/raw_cases
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_HEAD = (
    REPOSITORY.parent
    / "shared/data/raw-heads/niivue__niivue-demo-images__VS-SEG-001_t1_mpr_tra_gk"
    / "VS-SEG-001_t1ce.nii.gz"
)
SEQUENCES = ("t1", "t1ce", "t2", "flair")

# name -> (spacing mm, slab tilt about x in degrees, motion (rotation degrees about z and x,
# translation mm))
Acquisition = Tuple[Sequence[float], float, Tuple[float, float, Sequence[float]]]
ACQUISITIONS: Dict[str, Acquisition] = {
    "t1ce": ((0.9, 0.9, 5.5), 0.0, (0.0, 0.0, (0.0, 0.0, 0.0))),
    "t1": ((1.0, 1.0, 1.0), 0.0, (4.0, 0.0, (3.0, 0.0, 0.0))),
    "t2": ((0.45, 0.45, 5.0), 0.0, (0.0, 3.0, (0.0, 2.0, 0.0))),
    "flair": ((0.9, 0.9, 6.0), 6.0, (2.0, 0.0, (0.0, 0.0, 0.0))),
}


PROTOCOLS = ("clinical", "isotropic", "axial")
_STILL = (0.0, 0.0, (0.0, 0.0, 0.0))


def fixed_protocol(name: str, thickness: float = 5.0) -> Dict[str, Acquisition]:
    """The fixed protocols of the evaluation: ``clinical`` (:data:`ACQUISITIONS`),
    ``isotropic`` (every sequence 3-D at 1 mm on the T1ce's grid, no motion: the head alone)
    and ``axial`` (every sequence in axial slabs of ``thickness`` mm, no motion: the head and
    the slabs)."""
    if name == "clinical":
        return ACQUISITIONS
    slab = {"isotropic": 1.0, "axial": thickness}.get(name)
    if slab is None:
        raise ValueError(f"unknown protocol {name!r}; expected one of {', '.join(PROTOCOLS)}")
    return {key: ((1.0, 1.0, slab), 0.0, _STILL) for key in SEQUENCES}


RAW_HEADS = REPOSITORY.parent / "shared/data/raw-heads"

_RAW_NAME = re.compile(r"^(?P<original>.+)_raw\d*$")


def raw_case_name(name: str, variant: int, variants: int) -> str:
    """The name of a raw-looking version of case ``name``: ``<name>_raw``, or
    ``<name>_raw<variant>`` when several are written."""
    return f"{name}_raw" if variants == 1 else f"{name}_raw{variant}"


def original_case(name: str) -> Optional[str]:
    """The case a raw-looking case was made from (:func:`raw_case_name`), else ``None``."""
    match = _RAW_NAME.match(name)
    return match.group("original") if match else None


def random_acquisitions(rng: np.random.Generator) -> Dict[str, Acquisition]:
    """A protocol drawn at random, for training cases: a 2-D T1ce of 3-7 mm slabs (axial
    mostly, sometimes coronal or sagittal, tilted up to 10 degrees), a T1 either 3-D at 1 mm
    or 2-D like the T1ce, 2-D T2 and FLAIR of 3-7 mm slabs, and patient motion of up to
    5 degrees and 4 mm between sequences."""

    def slabs(thickness: float, in_plane: float) -> List[float]:
        spacing = [in_plane] * 3
        axis = rng.choice(3, p=[0.15, 0.15, 0.7])  # sagittal, coronal, axial
        spacing[int(axis)] = thickness
        return spacing

    def motion() -> Tuple[float, float, List[float]]:
        return (
            float(rng.uniform(-5, 5)),
            float(rng.uniform(-5, 5)),
            [float(t) for t in rng.uniform(-4, 4, size=3)],
        )

    t1ce = slabs(float(rng.uniform(3, 7)), float(rng.uniform(0.45, 1.0)))
    t1 = [1.0, 1.0, 1.0] if rng.random() < 0.5 else slabs(float(rng.uniform(3, 7)), 0.9)
    return {
        "t1ce": (t1ce, float(rng.uniform(-10, 10)), (0.0, 0.0, [0.0, 0.0, 0.0])),
        "t1": (t1, 0.0, motion()),
        "t2": (slabs(float(rng.uniform(3, 7)), float(rng.uniform(0.45, 1.0))), 0.0, motion()),
        "flair": (
            slabs(float(rng.uniform(3, 7)), float(rng.uniform(0.7, 1.0))),
            float(rng.uniform(-10, 10)),
            motion(),
        ),
    }


def write_prepared(
    folder: Path, acquired: Dict[str, sitk.Image], labels_on_head_grid: Sequence[sitk.Image]
):
    """The acquired scans as the engine prepares them for the network (co-registered, on the
    1 mm network grid, brain extracted; not yet normalised), with the reference carried
    exactly onto that grid: a training case that looks like a raw scan to the network.
    Returns the engine's :class:`~EoFormerSegmentationLib.engine.PreparedVolume`."""
    sys.path.insert(0, str(REPOSITORY / "EoFormerSegmentation"))
    from EoFormerSegmentationLib.engine import prepare_images
    from EoFormerSegmentationLib.geometry import array_to_image, resample_onto
    from EoFormerSegmentationLib.preprocessing import brain_bounding_box

    prepared = prepare_images(dict(acquired), device="cpu")
    box = brain_bounding_box(prepared.volume, margin=8)
    start = [int(b.start) for b in box]
    size = [int(b.stop - b.start) for b in box]
    folder.mkdir(parents=True, exist_ok=True)
    for index, key in enumerate(SEQUENCES):
        image = array_to_image(prepared.volume[index], prepared.grid)
        sitk.WriteImage(
            sitk.RegionOfInterest(image, size, start), str(folder / f"{key}.nii.gz"), True
        )
    label = resample_onto(labels_on_head_grid[0], prepared.grid, sitk.sitkNearestNeighbor)
    label = sitk.Cast(sitk.RegionOfInterest(label, size, start), sitk.sitkUInt8)
    sitk.WriteImage(label, str(folder / "seg.nii.gz"), True)
    return prepared


def _rotation(about_z: float, about_x: float) -> np.ndarray:
    z, x = np.radians(about_z), np.radians(about_x)
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    return rx @ rz


def slab_grid(
    source: sitk.Image, spacing: Sequence[float], tilt_degrees: float = 0.0
) -> sitk.Image:
    """An acquisition grid of ``spacing`` covering ``source``, slabs tilted about its x axis."""
    direction = np.asarray(source.GetDirection()).reshape(3, 3) @ _rotation(0.0, tilt_degrees)
    corners = [
        source.TransformIndexToPhysicalPoint(
            [int(i * (n - 1)) for i, n in zip(c, source.GetSize())]
        )
        for c in np.ndindex(2, 2, 2)
    ]
    local = np.asarray(corners) @ direction  # coordinates along the new axes
    low, high = local.min(axis=0), local.max(axis=0)
    size = [max(int(np.ceil((h - lo) / s)), 1) for lo, h, s in zip(low, high, spacing)]
    centre_local = (low + high) / 2.0
    half = (np.asarray(size) - 1) * np.asarray(spacing) / 2.0
    origin = direction @ (centre_local - half)
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing([float(s) for s in spacing])
    grid.SetDirection(direction.ravel().tolist())
    grid.SetOrigin(origin.tolist())
    return grid


def acquire(
    image: sitk.Image,
    grid: sitk.Image,
    motion: Tuple[float, float, Sequence[float]] = (0.0, 0.0, (0.0, 0.0, 0.0)),
    label: bool = False,
) -> sitk.Image:
    """``image`` as acquired on ``grid``: averaged over each slab (the grid's largest spacing)
    along the slab axis, after a rigid patient ``motion`` (degrees about z and x, mm)."""
    transform = sitk.Euler3DTransform()
    transform.SetCenter(
        image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
    )
    rotation = _rotation(motion[0], motion[1])
    transform.SetMatrix(rotation.ravel().tolist())
    transform.SetTranslation([float(t) for t in motion[2]])
    if label:
        return sitk.Resample(image, grid, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    spacing = np.asarray(grid.GetSpacing())
    thickness = float(spacing.max())
    source = image
    if thickness > 1.5:
        # a slab profile: Gaussian with the slab's FWHM along the slab axis of the grid
        sigma = np.full(3, 0.3)
        axis_in_source = np.argmax(
            np.abs(
                np.asarray(image.GetDirection()).reshape(3, 3).T
                @ np.asarray(grid.GetDirection()).reshape(3, 3)[:, int(np.argmax(spacing))]
            )
        )
        sigma[axis_in_source] = thickness / 2.355
        source = sitk.SmoothingRecursiveGaussian(image, sigma.tolist())
    return sitk.Resample(source, grid, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def read_case(folder: Path) -> Tuple[Dict[str, sitk.Image], sitk.Image, str]:
    """The four sequences and the label of a labelled case folder (any layout we read)."""
    sys.path.insert(0, str(REPOSITORY / "EoFormerSegmentation"))
    from EoFormerSegmentationLib.training.datasets import find_case_files

    files = find_case_files(folder, require_label=True)
    images = {key: sitk.ReadImage(str(files.images[key]), sitk.sitkFloat32) for key in SEQUENCES}
    return images, sitk.ReadImage(str(files.label), sitk.sitkUInt8), files.name


def thick_case(
    images: Dict[str, sitk.Image], labels: Sequence[sitk.Image], thickness: float
) -> Tuple[Dict[str, sitk.Image], List[sitk.Image]]:
    """Every sequence in axial slabs of ``thickness`` mm; the label maps on the same grid."""
    spacing = list(images["t1ce"].GetSpacing()[:2]) + [float(thickness)]
    grid = slab_grid(images["t1ce"], spacing)
    acquired = {key: acquire(image, grid) for key, image in images.items()}
    return acquired, [acquire(label, grid, label=True) for label in labels]


def raw_case(
    images: Dict[str, sitk.Image],
    labels: Sequence[sitk.Image],
    head_path: Path,
    acquisitions: Dict[str, Acquisition] = ACQUISITIONS,
) -> Tuple[Dict[str, sitk.Image], List[sitk.Image], List[sitk.Image]]:
    """The case's brain inside a real head, each sequence acquired on its own grid.

    The head is fitted around the brain, not the brain into the head: the case's brain keeps
    its voxels (its 1 mm grid is only widened to hold the head), and the head, stretched to
    the brain's bounding box, fills everything outside it. The brain, which carries the
    answer, is therefore resampled once, by the acquisition, as on a scanner.

    Returns:
        The acquired sequences; the label maps (the reference first) carried onto the T1ce's
        grid; the same label maps on the widened 1 mm grid of the case, before acquisition
        (the T1ce is acquired without motion, so they are exact in its physical space).
    """
    from EoFormerSegmentationLib.brain_extraction import extract_brain
    from EoFormerSegmentationLib.geometry import (
        array_to_image,
        image_to_array,
        network_grid,
        resample_onto,
    )

    head_image = sitk.ReadImage(str(head_path), sitk.sitkFloat32)
    head = image_to_array(resample_onto(head_image, network_grid(head_image)))
    head_brain = extract_brain(head, source="head", margin_mm=0.0).mask

    case_grid = network_grid(images["t1ce"])
    arrays = {key: image_to_array(resample_onto(images[key], case_grid)) for key in SEQUENCES}
    tumors = [
        image_to_array(resample_onto(label, case_grid, sitk.sitkNearestNeighbor))
        for label in labels
    ]
    case_brain = np.any([arrays[key] != 0 for key in SEQUENCES], axis=0)

    def box(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        points = np.argwhere(mask)
        return points.min(axis=0).astype(float), points.max(axis=0).astype(float)

    head_low, head_high = box(head_brain)
    case_low, case_high = box(case_brain)
    scale = (head_high - head_low) / np.maximum(case_high - case_low, 1.0)
    offset = head_low - case_low * scale  # case index q -> head index scale * q + offset

    # the case's grid widened, without resampling, until it holds the whole head
    head_first = -offset / scale
    head_last = (np.asarray(head.shape) - 1 - offset) / scale
    before = np.maximum(np.ceil(-head_first), 0).astype(int)
    after = np.maximum(np.ceil(head_last - (np.asarray(case_brain.shape) - 1)), 0).astype(int)
    padding = list(zip(before.tolist(), after.tolist()))
    wide_grid = sitk.ConstantPad(case_grid, before.tolist(), after.tolist())

    head_around = ndimage.affine_transform(
        head,
        scale,
        offset=offset - scale * before,
        output_shape=tuple(wide_grid.GetSize()),
        order=1,
        cval=0,
    )
    brain = np.pad(case_brain, padding)
    head_median = float(np.median(head[head_brain]))
    composites = {}
    for key in SEQUENCES:
        gain = head_median / float(np.median(arrays[key][case_brain]))
        composite = np.where(brain, np.pad(arrays[key], padding) * gain, head_around)
        composites[key] = array_to_image(composite.astype(np.float32), wide_grid)
    tumors_in_head = [
        array_to_image(np.pad(tumor, padding).astype(np.uint8), wide_grid) for tumor in tumors
    ]

    acquired = {}
    grids = {}
    for key, (spacing, tilt, motion) in acquisitions.items():
        grids[key] = slab_grid(composites[key], spacing, tilt)
        acquired[key] = acquire(composites[key], grids[key], motion)
    carried = [acquire(tumor, grids["t1ce"], label=True) for tumor in tumors_in_head]
    return acquired, carried, tumors_in_head


def write_case(
    folder: Path, images: Dict[str, sitk.Image], label: sitk.Image, as_int16: bool
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for key, image in images.items():
        if as_int16:
            scale = 3000.0 / max(float(np.percentile(sitk.GetArrayViewFromImage(image), 99.5)), 1)
            image = sitk.Cast(
                sitk.Round(sitk.Clamp(image * scale, lowerBound=0, upperBound=32767)),
                sitk.sitkInt16,
            )
        sitk.WriteImage(image, str(folder / f"{key}.nii.gz"), True)
    sitk.WriteImage(label, str(folder / "seg.nii.gz"), True)


def shippable_heads() -> List[Path]:
    """The real heads whose licence (the ``data licence`` line of their SOURCE.txt) allows
    shipping a model trained on them: CC BY-NC images are left out."""
    heads = []
    for image in sorted(RAW_HEADS.glob("*/*.nii.gz")):
        source = (image.parent / "SOURCE.txt").read_text(encoding="utf-8")
        licence = [line for line in source.splitlines() if line.startswith("data licence")]
        if licence and "NC" not in licence[0].split(":", 1)[1]:
            heads.append(image)
    if not heads:
        raise SystemExit(
            f"{RAW_HEADS}: no head whose licence allows shipping a model trained on it"
        )
    return heads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", type=Path, required=True, help="labelled cases")
    parser.add_argument("--mode", choices=("thick", "raw"), required=True)
    parser.add_argument(
        "--thickness", type=float, default=5.0, help="slab, mm (thick mode, --protocol axial)"
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="clinical",
        help="raw mode without --seed: 'clinical' (the fixed clinical protocol), 'isotropic' "
        "(every sequence 1 mm, no motion) or 'axial' (every sequence in axial slabs of "
        "--thickness mm, no motion); the last two tell what the head and the slabs cost",
    )
    parser.add_argument(
        "--head",
        type=Path,
        default=DEFAULT_HEAD,
        help="real head (raw mode); 'random': one of ../shared/data/raw-heads for each case "
        "(those under a non-commercial licence left out)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="raw mode: draw each case's protocol at random (thickness, orientation, motion)",
    )
    parser.add_argument("--variants", type=int, default=1, help="raw cases made from each case")
    parser.add_argument(
        "--prepared",
        action="store_true",
        help="raw mode: write the scans as the engine prepares them for the network (1 mm, "
        "registered, brain extracted) with the reference exact on that grid: training cases",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder of the new cases")
    parser.add_argument(
        "--carry", type=Path, help="folder of other label maps of the cases, <case>.nii.gz"
    )
    parser.add_argument("--carry-out", type=Path, help="where the carried label maps go")
    arguments = parser.parse_args()
    if arguments.carry and not arguments.carry_out:
        parser.error("--carry needs --carry-out")
    if arguments.mode == "thick" and (arguments.prepared or arguments.variants != 1):
        parser.error("--prepared and --variants are for --mode raw")
    if arguments.protocol != "clinical" and (arguments.mode != "raw" or arguments.seed is not None):
        parser.error("--protocol is for --mode raw without --seed")

    rng = np.random.default_rng(arguments.seed)
    heads = shippable_heads() if arguments.head == Path("random") else None
    written = []
    for folder in arguments.cases:
        images, label, name = read_case(folder)
        labels = [label]
        if arguments.carry:
            other = arguments.carry / f"{name}.nii.gz"
            if not other.is_file():
                parser.error(f"--carry: {other} not found")
            labels.append(sitk.ReadImage(str(other), sitk.sitkUInt8))
        for variant in range(arguments.variants):
            if arguments.mode == "thick":
                acquired, carried = thick_case(images, labels, arguments.thickness)
                case_name = f"{name}_thick{arguments.thickness:g}mm"
            else:
                head = arguments.head if heads is None else heads[rng.integers(len(heads))]
                protocol = (
                    fixed_protocol(arguments.protocol, arguments.thickness)
                    if arguments.seed is None
                    else random_acquisitions(rng)
                )
                acquired, carried, on_head_grid = raw_case(images, labels, head, protocol)
                case_name = raw_case_name(name, variant, arguments.variants)
                if arguments.protocol == "isotropic":
                    case_name += "_iso"
                elif arguments.protocol == "axial":
                    case_name += f"_axial{arguments.thickness:g}mm"
            target = arguments.out / case_name
            if arguments.prepared:
                write_prepared(target, acquired, on_head_grid)
            else:
                write_case(target, acquired, carried[0], as_int16=arguments.mode == "raw")
            if arguments.carry:
                arguments.carry_out.mkdir(parents=True, exist_ok=True)
                sitk.WriteImage(carried[1], str(arguments.carry_out / f"{case_name}.nii.gz"), True)
            written.append(str(target))
            print(
                f"{target}: "
                + ", ".join(
                    f"{key} {img.GetSize()} {tuple(round(s, 2) for s in img.GetSpacing())}"
                    for key, img in acquired.items()
                ),
                flush=True,
            )
    print(json.dumps({"cases": written}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
