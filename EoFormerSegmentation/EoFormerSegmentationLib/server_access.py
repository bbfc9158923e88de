"""Who may use the processing server: its bearer token and the address it listens on.

Standard library only, so that ``eoformer serve`` refuses an unsafe start before it needs the
server's packages.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Optional

from EoFormerSegmentationLib.errors import InputError

__all__ = ["is_loopback", "check_bind_address", "read_token_file", "MIN_TOKEN_LENGTH"]

MIN_TOKEN_LENGTH = 16
"""Fewest characters a token may have."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); False for all
    others, the any-address ``0.0.0.0`` / ``::`` included."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind_address(host: str, token: Optional[str]) -> None:
    """Refuse to serve on a non-loopback address without a token.

    Raises:
        InputError: ``host`` is reachable from other machines and there is no token.
    """
    if not token and not is_loopback(host):
        raise InputError(
            f"--host {host}: other machines can reach this address; give --token-file FILE "
            '(a file holding a long random token, e.g. from `python -c "import secrets; '
            'print(secrets.token_urlsafe(32))"`), or serve on 127.0.0.1 only'
        )


def read_token_file(path: Path) -> str:
    """The token in ``path`` (surrounding white space removed).

    Raises:
        InputError: the file is missing, unreadable, empty or holds a token shorter than :data:`MIN_TOKEN_LENGTH`
            characters.
    """
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"--token-file {path}: cannot read the token ({error})") from error
    if len(token) < MIN_TOKEN_LENGTH:
        raise InputError(
            f"--token-file {path}: the token is {'empty' if not token else 'too short'}; "
            "use at least 16 random characters"
        )
    if any(character.isspace() for character in token):
        raise InputError(f"--token-file {path}: the token holds white space")
    return token
