"""Checked numeric option types and up-front checks shared by the sub-commands.

A numeric option gets one of the ``type=`` functions below, so that a value out of range
(``--sw-batch-size 0``, ``--overlap 1``, ``--lr nan``) is refused by argparse with the option
named and exit status 2, before any work. :func:`check_numeric_options` gives every numeric
option left with a plain ``int`` or ``float`` type the least check that holds for all of them:
a finite, non-negative number.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable, Optional, Union

__all__ = [
    "positive_int",
    "non_negative_int",
    "positive_float",
    "non_negative_float",
    "fraction",
    "open_fraction",
    "check_numeric_options",
    "check_model_file",
    "check_run_folder",
]


def _number(text: str, kind: Callable[[str], Union[int, float]]) -> Union[int, float]:
    try:
        value = kind(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1 (counts, sizes, threads)."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number of at least 0 (seeds, patience, optional counts)."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0 (learning rates, seconds)."""
    value = float(_number(text, float))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number of at least 0."""
    value = float(_number(text, float))
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of at least 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A fraction from 0 to 1, both included (shares of crops)."""
    value = float(_number(text, float))
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to 1, got {text}")
    return value


def open_fraction(text: str) -> float:
    """A fraction from 0 included to 1 excluded (sliding-window overlap)."""
    value = float(_number(text, float))
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(
            f"expected a fraction from 0 (included) to 1 (excluded), got {text}"
        )
    return value


def _finite_non_negative(kind: Callable[[str], Union[int, float]]) -> Callable[[str], object]:
    def checked(text: str) -> Union[int, float]:
        value = _number(text, kind)
        if value < 0:
            raise argparse.ArgumentTypeError(f"expected a number of at least 0, got {text}")
        return value

    checked.__name__ = f"non_negative_{kind.__name__}"
    return checked


def check_numeric_options(parser: argparse.ArgumentParser) -> None:
    """Give every plain ``int`` / ``float`` option of ``parser`` a finite, non-negative check.

    Options with one of this module's types keep their stricter check.
    """
    for action in parser._actions:  # argparse exposes no public list of its actions
        if action.type in (int, float):
            action.type = _finite_non_negative(action.type)


def check_model_file(path: Optional[Union[str, Path]]) -> None:
    """Refuse a model file that cannot be used, before any other work.

    The whole file is read and checked the way segmentation reads it (format, network
    settings with 4 inputs and 3 outputs, weights that fit).

    Raises:
        InputError: the message names the file and what is wrong.
    """
    if path is None:
        return
    from EoFormerSegmentationLib.models import load_checkpoint

    load_checkpoint(path)


def check_run_folder(out: Union[str, Path], init: Optional[Union[str, Path]] = None) -> None:
    """Up-front checks of ``eoformer train``: its ``--out`` run folder and ``--init`` model.

    Run before any data is read or any file written, so that a bad ``--init`` or ``--out``
    leaves nothing behind (not even the run's ``config.json``).

    Raises:
        InputError: ``out`` is a file or cannot be created or written; ``init`` is not a
            usable model file (see :func:`check_model_file`).
    """
    from EoFormerSegmentationLib.errors import InputError
    from EoFormerSegmentationLib.files import check_creatable_folder

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(
            f"--out {out}: is a file; give a folder for the run (checkpoints, model cards, log.csv)"
        )
    check_creatable_folder(out, f"--out {out}")
    if init is not None:
        check_model_file(init)
