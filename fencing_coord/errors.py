"""The exception hierarchy of fencing-coord.

Every error the library raises on purpose derives from :class:`FencingCoordError`;
errors of the client libraries underneath (etcd3, kazoo, psycopg) are mapped at the
backend's edge to the most specific class below and chained (``raise ... from exc``)::

    FencingCoordError
    ├── ConfigurationError      bad URL, unknown scheme, missing extra, bad option (also ValueError)
    ├── InvalidArgument         bad name, key, value, token, timeout (also ValueError)
    ├── InvalidArgumentType     argument of the wrong type (also TypeError)
    ├── BackendUnavailable      the coordination service cannot be reached (retryable)
    ├── LockTimeout             acquire() waited its whole timeout (also TimeoutError)
    ├── LockLost                the lease/session behind a grant is gone
    ├── StaleTokenError         the resource refused a token (never retryable)
    ├── RowNotFound             Pattern A: no row of the table matches the key (also LookupError)
    ├── TokenSpaceExhausted     the backend cannot issue a larger token for a lock
    └── NotSupported            the backend lacks an optional capability

``retryable`` tells a caller whether the same call may succeed if tried again.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "ConfigurationError",
    "FencingCoordError",
    "InvalidArgument",
    "InvalidArgumentType",
    "LockLost",
    "LockTimeout",
    "NotSupported",
    "RowNotFound",
    "StaleTokenError",
    "TokenSpaceExhausted",
]


class FencingCoordError(Exception):
    """Base of every error fencing-coord raises on purpose."""

    retryable: bool = False


class ConfigurationError(FencingCoordError, ValueError):
    """The URL, an option or the installation is wrong; the message says what to fix."""


class InvalidArgument(FencingCoordError, ValueError):
    """An argument has the right type but a value the contract does not accept."""


class InvalidArgumentType(FencingCoordError, TypeError):
    """An argument has a type the contract does not accept."""


class BackendUnavailable(FencingCoordError):
    """The coordination service (or the store) could not be reached in time.

    Retryable: nothing was granted or written on the caller's behalf that it does not
    know about, except where the raising method documents otherwise, and except when the
    message says "outcome unknown": a write whose reply was lost, which may or may not
    have been applied (a store never guesses accepted or refused).
    """

    retryable = True


class LockTimeout(FencingCoordError, TimeoutError):
    """``acquire`` waited its whole timeout without being granted the lock."""

    retryable = True


class LockLost(FencingCoordError):
    """The lease or session behind a grant is gone: the caller no longer holds the lock."""


class StaleTokenError(FencingCoordError):
    """A fenced resource refused a token lower than one it had already accepted.

    Never retryable: the caller lost its lock, and a newer holder has written since.
    """


class RowNotFound(FencingCoordError, LookupError):
    """Pattern A (:mod:`fencing_coord.stores.fenced_sql`): no row of the table matches the
    key, so there was nothing to fence.

    Not a :class:`StaleTokenError`: no newer holder refused the token, and the caller
    still holds its lock. Create the row (``fenced_upsert``) or fix the key.
    """


class TokenSpaceExhausted(FencingCoordError):
    """The backend cannot issue a token larger than every earlier one for this lock.

    Raised instead of ever handing out a smaller token (for example when a ZooKeeper
    sequence counter is about to wrap). Rename the lock, or migrate, to continue.
    """


class NotSupported(FencingCoordError):
    """The backend does not offer this optional capability."""
