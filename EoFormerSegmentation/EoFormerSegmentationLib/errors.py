"""Exceptions shared by the engine, the command line and the Slicer module."""

__all__ = ["InputError", "Cancelled"]


class InputError(ValueError):
    """Bad user input: a missing, unreadable or inconsistent file or argument.

    The message names the file (or argument) and the problem. The command line prints it and
    exits with status 2; the Slicer module shows it in an error dialog.
    """


class Cancelled(RuntimeError):
    """The user cancelled a long-running operation (segmentation, training, fine-tuning)."""
