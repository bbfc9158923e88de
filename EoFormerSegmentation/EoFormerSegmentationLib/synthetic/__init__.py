"""Synthetic glioma cases in the BraTS layout, generated from anatomy shipped in packages."""

from EoFormerSegmentationLib.synthetic.generator import (
    GENERATOR_VERSION,
    SyntheticCase,
    generate_case,
    write_case,
)

__all__ = ["GENERATOR_VERSION", "SyntheticCase", "generate_case", "write_case"]
