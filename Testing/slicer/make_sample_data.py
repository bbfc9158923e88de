"""Write the module's sample case from the real case ``../shared/data/real/TCGA-FG-6692``.

The four MRI volumes are cropped to the brain's bounding box (voxels non-zero in any sequence,
plus a margin), kept as int16 and written as gzip-compressed NRRD files; the consensus label map
is written as a Slicer segmentation (``.seg.nrrd``) with the three non-overlapping BraTS
sub-regions as segments (Necrotic tumor core, Edema, Enhancing tumor; names, colors and
terminology from :mod:`EoFormerSegmentationLib.labels`, as the module's output), for the
fine-tuning tutorial. A thumbnail for the
Sample Data module is drawn from the T1ce slice through the tumor's center.

Run from the repository root::

    python Testing/slicer/make_sample_data.py

Geometry is preserved exactly: every output voxel sits at the same physical (LPS, mm) position
as the input voxel it was cut from (``test_slicer_sample_data.py`` checks this).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicerio
from EoFormerSegmentationLib import labels
from EoFormerSegmentationLib.preprocessing import brain_bounding_box

REPOSITORY = Path(__file__).resolve().parents[2]
SOURCE_CASE = REPOSITORY.parent / "shared" / "data" / "real" / "TCGA-FG-6692"
OUTPUT_FOLDER = REPOSITORY / "EoFormerSegmentation" / "Resources" / "SampleData"
CASE_NAME = "TCGA-FG-6692"
SEQUENCES = ("t1", "t1ce", "t2", "flair")
BRAIN_MARGIN_VOXELS = 2


def _crop(image: sitk.Image, box_xyz: tuple) -> sitk.Image:
    """Cut ``box_xyz`` (three slices over the x, y, z voxel axes) out of ``image``."""
    start = [int(axis.start) for axis in box_xyz]
    size = [int(axis.stop - axis.start) for axis in box_xyz]
    return sitk.RegionOfInterest(image, size=size, index=start)


def _write_segmentation(label_image: sitk.Image, path: Path) -> None:
    """Write a BraTS label map as a ``.seg.nrrd`` with the NCR / ED / ET segments."""
    label_xyz = sitk.GetArrayFromImage(label_image).transpose(2, 1, 0)  # (x, y, z) = (i, j, k)
    labels.check_label_values(label_xyz, str(path))
    enhancing = labels.ET_LABEL["brats2023"] if (label_xyz == 3).any() else 4
    direction = np.array(label_image.GetDirection()).reshape(3, 3)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = direction * np.array(label_image.GetSpacing())
    ijk_to_lps[:3, 3] = label_image.GetOrigin()
    segmentation = slicerio.create_segmentation(label_xyz.shape, ijk_to_lps)
    for segment in labels.SUBREGION_SEGMENTS:
        value = enhancing if segment["id"] == "ET" else segment["label"]
        slicerio.add_segment(
            segmentation,
            label_xyz == value,
            {
                "id": segment["id"],
                "name": segment["name"],
                "color": list(segment["color"]),
                "terminology": slicerio.segmentation.terminology_entry_from_string(
                    labels.segment_terminology(segment)
                ),
            },
        )
    slicerio.write_segmentation(str(path), segmentation)


def _write_thumbnail(t1ce: sitk.Image, label_image: sitk.Image, path: Path) -> None:
    """260 x 280 pixel thumbnail: the axial T1ce slice through the tumor center, outlined regions."""
    from PIL import Image, ImageDraw

    volume = sitk.GetArrayFromImage(t1ce).astype(np.float32)  # (z, y, x)
    label_zyx = sitk.GetArrayFromImage(label_image)
    tumor_slices = np.flatnonzero(label_zyx.reshape(label_zyx.shape[0], -1).any(axis=1))
    z = int(np.median(tumor_slices)) if tumor_slices.size else volume.shape[0] // 2
    intensities = volume[z]
    low, high = np.percentile(intensities[intensities > 0], [1, 99.5])
    gray = np.clip((intensities - low) / max(high - low, 1e-6), 0, 1) * 255
    # LPS voxel axes: rows run to posterior, columns to left; radiological display flips neither.
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    regions = labels.labels_to_regions(label_zyx[z])
    for segment, mask in zip(labels.SEGMENTS, regions):
        color = np.array(segment["color"]) * 255
        rgb[mask] = 0.55 * rgb[mask] + 0.45 * color
    picture = Image.fromarray(rgb.astype(np.uint8), "RGB")
    picture = picture.resize((picture.width * 2, picture.height * 2), Image.BICUBIC)
    canvas = Image.new("RGB", (260, 280), (0, 0, 0))
    picture.thumbnail((256, 256))
    canvas.paste(picture, ((260 - picture.width) // 2, (280 - picture.height) // 2 - 8))
    ImageDraw.Draw(canvas).text((8, 262), f"{CASE_NAME}  T1ce + WT/TC/ET", fill=(230, 230, 230))
    canvas.save(path)


def make_sample_data(source: Path = SOURCE_CASE, output: Path = OUTPUT_FOLDER) -> list:
    """Write the cropped sample case; returns the written files.

    Args:
        source: BraTS-layout case folder with ``t1``, ``t1ce``, ``t2``, ``flair`` and
            ``seg_consensus`` NIfTI files on one grid.
        output: folder to write ``<case>_<sequence>.nrrd``, ``<case>_reference.seg.nrrd`` and
            ``<case>.png`` into.
    """
    output.mkdir(parents=True, exist_ok=True)
    images = {name: sitk.ReadImage(str(source / f"{name}.nii.gz")) for name in SEQUENCES}
    label_image = sitk.ReadImage(str(source / "seg_consensus.nii.gz"))
    stacked = np.stack([sitk.GetArrayFromImage(images[name]) for name in SEQUENCES])
    box_zyx = brain_bounding_box(stacked, margin=BRAIN_MARGIN_VOXELS)
    box_xyz = tuple(reversed(box_zyx))
    written = []
    for name in SEQUENCES:
        cropped = sitk.Cast(_crop(images[name], box_xyz), sitk.sitkInt16)
        path = output / f"{CASE_NAME}_{name}.nrrd"
        sitk.WriteImage(cropped, str(path), useCompression=True, compressionLevel=9)
        written.append(path)
    cropped_label = _crop(label_image, box_xyz)
    segmentation_path = output / f"{CASE_NAME}_reference.seg.nrrd"
    _write_segmentation(cropped_label, segmentation_path)
    written.append(segmentation_path)
    thumbnail_path = output / f"{CASE_NAME}.png"
    _write_thumbnail(_crop(images["t1ce"], box_xyz), cropped_label, thumbnail_path)
    written.append(thumbnail_path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE_CASE)
    parser.add_argument("--output", type=Path, default=OUTPUT_FOLDER)
    arguments = parser.parse_args()
    for path in make_sample_data(arguments.source, arguments.output):
        print(f"{path}  {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
