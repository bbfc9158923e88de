"""Training and fine-tuning EoFormer.

- :mod:`.datasets`: find, check and load BraTS-layout cases (and cases written by the module);
  endless crop streams over them.
- :mod:`.synthetic_stream`: synthetic cases generated on the fly, and the seed ranges kept
  apart for training, validation and held-out evaluation.
- :mod:`.transforms`: MONAI training / validation transforms.
- :mod:`.losses`: Dice + BCE on the WT / TC / ET channels.
- :mod:`.trainer`: :func:`~.trainer.train` (single process or ``torchrun``).
- :mod:`.finetune`: :func:`~.finetune.finetune` on a few corrected cases.

Submodules are imported on demand so that importing this package costs nothing.
"""

__all__ = ["datasets", "synthetic_stream", "transforms", "losses", "trainer", "finetune"]
