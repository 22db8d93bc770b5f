"""The wire protocol shared by the receivers (ASGI, WSGI) and the clients (httpx, requests).

Request headers::

    Fencing-Token: 42            decimal, 0 .. 2**63-1
    Fencing-Resource: orders     a resource name (see check_name); the receiver may have a default

Refusals carry ``Fencing-Error`` (so that a client never mistakes an application's own
409 for a fencing refusal) and a JSON body naming the decision::

    409 Conflict               Fencing-Error: stale-token      {"highest_token": 9, ...}
    428 Precondition Required  Fencing-Error: token-required   (no token where one is required)
    400 Bad Request            Fencing-Error: bad-fence        (malformed token or resource)
    503 Service Unavailable    Fencing-Error: unavailable      (the store could not decide, or commit)

Body fields: ``error`` (the header's value), ``detail`` (a sentence), ``resource`` and
``token`` (when known), ``highest_token`` (409 only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import (
    BackendUnavailable,
    ConfigurationError,
    FencingCoordError,
    InvalidArgument,
    StaleTokenError,
)
from ..stores.base import check_store_token
from ..validation import check_name

__all__ = [
    "ERROR_HEADER",
    "RESOURCE_HEADER",
    "TOKEN_HEADER",
    "Fence",
    "Refusal",
    "parse_fence",
    "refusal_error",
    "stale",
    "unavailable",
]

TOKEN_HEADER = "Fencing-Token"
RESOURCE_HEADER = "Fencing-Resource"
ERROR_HEADER = "Fencing-Error"

STALE, REQUIRED, BAD, UNAVAILABLE = "stale-token", "token-required", "bad-fence", "unavailable"
_REASONS = {400: "Bad Request", 409: "Conflict", 428: "Precondition Required", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Fence:
    """A request's fence: the resource it acts on and the token it acts under."""

    resource: str
    token: int


@dataclass(frozen=True)
class Refusal:
    """A response the receiver sends instead of running the handler."""

    status: int
    error: str
    detail: str
    resource: str | None = None
    token: int | None = None
    highest_token: int | None = None

    @property
    def status_line(self) -> str:
        """``"409 Conflict"``, as WSGI wants it."""
        return f"{self.status} {_REASONS[self.status]}"

    def body(self) -> bytes:
        fields: dict[str, object] = {"error": self.error, "detail": self.detail}
        if self.resource is not None:
            fields["resource"] = self.resource
        if self.token is not None:
            fields["token"] = self.token
        if self.status == 409:
            fields["highest_token"] = self.highest_token
        return json.dumps(fields).encode()

    def headers(self, body: bytes) -> list[tuple[str, str]]:
        return [("content-type", "application/json"), ("content-length", str(len(body))),
                (ERROR_HEADER.lower(), self.error)]


def parse_fence(token: str | None, resource: str | None, default_resource: str | None,
                required: bool) -> Fence | Refusal | None:
    """Read a request's fence from its header values (None where absent).

    Returns the :class:`Fence`; None when the request carries no token and none is
    required (it passes unfenced); or the :class:`Refusal` to send: 428 for a missing
    token, 400 for a malformed token or resource, or a token without a resource.
    """
    if token is None:
        if not required:
            return None
        return Refusal(428, REQUIRED, f"this endpoint requires a {TOKEN_HEADER} header (and {RESOURCE_HEADER})",
                       resource=resource)
    name = resource if resource is not None else default_resource
    if name is None:
        return Refusal(400, BAD, f"{TOKEN_HEADER} without {RESOURCE_HEADER}")
    try:
        check_name(name, "resource name")
    except FencingCoordError as exc:
        return Refusal(400, BAD, f"{RESOURCE_HEADER}: {exc}")
    text = token.strip()
    # int() also takes "+5", "1_000" and non-ASCII digits; the header is plain decimal.
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        return Refusal(400, BAD, f"{TOKEN_HEADER} must be a decimal integer, got {token[:40]!r}", resource=name)
    try:
        value = check_store_token(int(text))
    except FencingCoordError as exc:
        return Refusal(400, BAD, f"{TOKEN_HEADER}: {exc}", resource=name)
    return Fence(name, value)


def stale(fence: Fence, highest: int | None, strict: bool) -> Refusal:
    """The 409 for a token the resource refused."""
    relation = "<=" if strict and fence.token == highest else "<"
    return Refusal(409, STALE, f"stale token {fence.token} {relation} {highest}", fence.resource, fence.token,
                   highest)


def unavailable(fence: Fence, detail: str) -> Refusal:
    """The 503 for a store that could not decide (or commit)."""
    return Refusal(503, UNAVAILABLE, detail, fence.resource, fence.token)


def refusal_error(status: int, error: str | None, body: bytes, request: str) -> FencingCoordError | None:
    """The error a client raises for a receiver's refusal, or None for any other response
    (an application's own 409 has no ``Fencing-Error`` header and is left alone).

    409 → :class:`StaleTokenError`; 428 → :class:`ConfigurationError` (the token did not
    arrive: a proxy in between strips the header?); 400 → :class:`InvalidArgument`;
    503 → :class:`BackendUnavailable`. ``request`` names it in the message (``"POST /pay"``).
    """
    kinds: dict[tuple[int, str], type[FencingCoordError]] = {
        (409, STALE): StaleTokenError, (428, REQUIRED): ConfigurationError, (400, BAD): InvalidArgument,
        (503, UNAVAILABLE): BackendUnavailable,
    }
    kind = kinds.get((status, error or ""))
    if kind is None:
        return None
    try:
        detail = str(json.loads(body)["detail"])
    except (ValueError, KeyError, TypeError):
        detail = body[:200].decode("utf-8", "replace")
    if kind is ConfigurationError:
        detail += f"; the request left with a {TOKEN_HEADER} header: does a proxy in between drop it?"
    return kind(f"{request}: {status} {_REASONS[status]}: {detail}")
