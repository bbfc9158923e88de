"""``python -m EoFormerSegmentationLib``: the same as the ``eoformer`` command."""

import sys

from EoFormerSegmentationLib.cli import main

sys.exit(main())
