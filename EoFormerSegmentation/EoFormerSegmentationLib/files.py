"""Writing result files safely, and checking up front that they can be written.

Every file the engine, the command line and training write (label maps, ``.seg.nrrd``,
reports, checkpoints, model cards) goes through :func:`atomic_write`:

- readers never see a half-written file, and a failure or cancellation leaves nothing behind;
- the file gets the permissions that the user's umask gives a new file (``0644`` with the
  usual ``022``), so that the other users of a shared folder can read results;
- without ``overwrite``, the file is created exclusively: when another run created the same
  file meanwhile, that file is kept and this write is refused;
- write errors (read-only folder, full disk...) become :class:`OutputError` naming the file
  and the reason.

The ``check_*`` functions run before long work starts, so that a run never computes for
minutes and then fails on a folder it cannot write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

from EoFormerSegmentationLib.errors import Cancelled, OutputError

__all__ = [
    "atomic_write",
    "current_umask",
    "check_writable_folder",
    "check_creatable_folder",
    "check_output_file",
    "remove_file",
]

PathLike = Union[str, "os.PathLike[str]"]

# file systems without hard links (FAT, some network shares) answer os.link with one of these
_NO_HARD_LINKS = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


def current_umask() -> int:
    """The process's umask (the permission bits that new files do not get)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _reason(error: BaseException) -> str:
    """A short reason for a write error: ``Permission denied``, ``No space left on device``."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _write_error(path: Path, error: BaseException) -> OutputError:
    return OutputError(f"{path}: cannot write the file ({_reason(error)})")


def _exists_error(path: Path) -> OutputError:
    return OutputError(
        f"{path}: the output file appeared while this run was writing it (another run writing "
        "the same file?); it was left as it is; use --overwrite to replace it"
    )


def _place_exclusively(temporary: Path, path: Path) -> None:
    """Give ``temporary`` the name ``path``, refusing when ``path`` exists (atomically)."""
    try:
        os.link(temporary, path)
    except FileExistsError as error:
        raise _exists_error(path) from error
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
        # no hard links here: claim the name with an exclusive creation, then fill it
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError as exists:
            raise _exists_error(path) from exists
        os.close(handle)
        os.replace(temporary, path)
    else:
        os.unlink(temporary)


@contextlib.contextmanager
def atomic_write(path: PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; give it the name ``path`` only on success.

    The suffix of ``path`` is kept on the temporary name, so writers that choose a format by
    suffix (SimpleITK, nibabel) still work. The finished file honours the umask.

    Args:
        path: the final file. Its folder is created when missing.
        overwrite: replace an existing ``path``; when False, ``path`` is created exclusively
            and an existing file (for example one written by a concurrent run) is kept.

    Raises:
        OutputError: the file cannot be written (the message names it and gives the reason),
            or ``path`` exists and ``overwrite`` is False. Nothing is left behind then.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = "".join(path.suffixes) or ".tmp"
        handle, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=f".partial{suffix}", dir=path.parent
        )
        os.close(handle)
    except OSError as error:
        raise _write_error(path, error) from error
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        os.chmod(temporary_path, 0o666 & ~current_umask())
        if overwrite:
            os.replace(temporary_path, path)
        else:
            _place_exclusively(temporary_path, path)
    except (OutputError, Cancelled):
        raise
    except (OSError, RuntimeError) as error:  # writers raise OSError, SimpleITK RuntimeError
        raise _write_error(path, error) from error
    finally:
        with contextlib.suppress(OSError):
            if temporary_path.exists():
                temporary_path.unlink()


def check_writable_folder(folder: PathLike, what: str) -> None:
    """Refuse a folder in which no file can be created.

    Tried for real (an empty temporary file is created and removed at once), which covers
    permissions, read-only mounts and access-control lists alike.

    Args:
        folder: the folder that will receive files.
        what: what is being written, for the message (an option and its value, or a file).

    Raises:
        OutputError: the folder does not exist, is not a folder, or is not writable.
    """
    folder = Path(folder)
    if not folder.exists():
        raise OutputError(f"{what}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise OutputError(f"{what}: {folder} is not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".eoformer-write-check-", dir=folder)
    except OSError as error:
        raise OutputError(
            f"{what}: cannot write in the folder {folder} ({_reason(error)})"
        ) from error
    os.close(handle)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def check_creatable_folder(folder: PathLike, what: str) -> None:
    """Refuse an output folder that is a file, or that cannot be created or written.

    Nothing is created: the nearest existing folder above ``folder`` is checked instead, so
    that a run refused later leaves no empty folder behind.

    Args:
        folder: an output folder, existing or not.
        what: the option and its value, for the message.

    Raises:
        OutputError: ``folder`` (or a folder above it) is a file, or is not writable.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what}: {folder} exists and is a file, not a folder")
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise OutputError(f"{what}: {existing} is a file, so {folder} cannot be created")
    check_writable_folder(existing, what)


def check_output_file(path: PathLike, what: str) -> None:
    """Refuse an output file that is a folder, or whose folder cannot be written or created.

    Args:
        path: the file to be written.
        what: the option (``--json``, ``--output``...), for the message.

    Raises:
        OutputError: the file cannot be written there.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path}: is a folder; give a file name")
    check_creatable_folder(path.parent, f"{what} {path}")


def remove_file(path: PathLike) -> None:
    """Remove a file written by this run, ignoring a file that is already gone."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
