"""Exceptions shared by the engine, the command line and the Slicer module."""

__all__ = ["InputError", "OutputError", "Cancelled"]


class InputError(ValueError):
    """Bad user input: a missing, unreadable or inconsistent file or argument.

    The message names the file (or argument) and the problem. The command line prints it and
    exits with status 2; the Slicer module shows it in an error dialog.
    """


class OutputError(InputError):
    """A result cannot be written: a folder that is missing or read-only, a full disk, or an
    output file that another run created meanwhile.

    The message names the file or folder and the reason. Handled like :class:`InputError`
    (exit status 2 on the command line); no partial file is left behind.
    """


class Cancelled(RuntimeError):
    """The user cancelled a long-running operation (segmentation, training, fine-tuning)."""
