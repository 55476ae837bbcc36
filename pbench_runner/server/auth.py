"""Users and access tokens.

A token is shown once, when it is made; the index keeps only its SHA-256.
A request names its user with ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final

from pbench_runner.errors import UsageError
from pbench_runner.server.storage import Index

USER_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(index: Index, user: str) -> str:
    """A new token for ``user`` (who is created when new); returns the token."""
    if not USER_NAME.match(user):
        raise UsageError(
            f"bad user name {user!r}: letters, digits, '_', '.', '@' or '-' (64 at most)"
        )
    # a fixed prefix: a token never starts with '-' (an option to argparse) and is
    # easy to recognise in a leaked file
    token = f"pbt_{secrets.token_urlsafe(32)}"
    index.add_token(user, token_hash(token))
    return token


def user_of(index: Index, authorization: str | None) -> str | None:
    """The user a ``Bearer`` header names, or None (no header, or an unknown token)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return index.user_for_token(token_hash(token.strip()))
