"""EoFormer brain-tumor segmentation engine, usable without 3D Slicer.

The 3D Slicer module, the ``eoformer`` command line and the training code all call the
functions of this package; none of them holds a second copy of the pipeline.
"""

__version__ = "0.1.0"
