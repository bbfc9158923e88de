"""The ``eoformer`` command line: one sub-command per file of this folder.

Each sub-command module defines ``add_arguments(parser)`` and ``run(args) -> int``; this
file only dispatches. Errors of the user's input (:class:`InputError`, numeric options out of
range) and files that cannot be written (:class:`OSError`: a read-only folder, a full disk)
are printed without a traceback, naming the file, and give exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from EoFormerSegmentationLib import __version__
from EoFormerSegmentationLib.cli.options import check_numeric_options
from EoFormerSegmentationLib.errors import Cancelled, InputError

__all__ = ["main", "build_parser", "TRAIN_EXTRA"]

TRAIN_EXTRA = "needs the [train] extra: pip install 'eoformer-segmentation[train]'"
"""What ``synth`` and ``train`` need beyond the segmentation's packages (nilearn's template)."""

# sub-command -> (module, one-line help)
COMMANDS = {
    "segment": ("segment", "segment WT/TC/ET from T1, T1ce, T2 and FLAIR images"),
    "evaluate": ("evaluate", "Dice and HD95 of a segmentation against a reference label map"),
    "synth": ("synth", f"write synthetic glioma cases in the BraTS layout ({TRAIN_EXTRA})"),
    "train": ("train", f"train EoFormer on BraTS-layout folders ({TRAIN_EXTRA})"),
    "finetune": ("finetune", "fine-tune a model on a few corrected cases"),
    "benchmark": ("benchmark", "speed and memory of EoFormer and peer networks"),
    "serve": (
        "serve",
        "processing server: segment over HTTP for Slicer on other machines (needs the "
        '[server] extra: pip install -e ".[server]")',
    ),
}


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The argument parser; with ``command``, only that sub-command's module is imported.

    Importing one sub-command only keeps start-up fast and lets a command run where another
    command's dependencies are missing (training needs no SimpleITK, for example).
    """
    parser = argparse.ArgumentParser(
        prog="eoformer",
        description="EoFormer brain-tumor segmentation (whole tumor, tumor core, enhancing "
        "tumor) from T1, T1ce, T2 and FLAIR MRI. Research software, not for clinical use.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if command is not None and name != command:
            continue
        module = importlib.import_module(f"EoFormerSegmentationLib.cli.{module_name}")
        module.add_arguments(sub)
        check_numeric_options(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``eoformer`` with ``argv`` (default: the process's arguments); the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in arguments if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in COMMANDS else None)
    args = parser.parse_args(arguments)
    try:
        return int(args.run(args) or 0)
    except InputError as error:
        print(f"eoformer {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file the command could not write or read
        where = f"{error.filename}: " if error.filename else ""
        reason = error.strerror or str(error)
        print(f"eoformer {args.command}: error: {where}{reason}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        print(f"eoformer {args.command}: cancelled", file=sys.stderr)
        return 130
