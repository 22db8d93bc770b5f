"""``S3Store``: resources in object storage, fenced by conditional writes (pattern C).

Each resource is one state object, ``<prefix><quoted resource name>``, holding its
highest token and all its values (format: :mod:`.s3_state`). Every change is a
read-decide-write cycle whose write is conditional:

1. ``GetObject`` the state and its ETag (or learn that there is none);
2. apply the admission rule to that state (:func:`~fencing_coord.stores.base.admits`);
3. ``PutObject`` the new state with ``If-Match: <ETag>``, or ``If-None-Match: *`` when
   the object did not exist. The service applies it only if the object is still the one
   read, so the check in step 2 and the write are one atomic step;
4. on ``412 Precondition Failed`` (or ``409 ConditionalRequestConflict``, or a 404 of an
   object deleted in between) someone else wrote first: read again and redo the cycle.

A writer keeps the last state and ETag it wrote or read per resource and starts at
step 3 with them; a holder writing again under its token therefore costs one request,
and a stale cache costs one 412 and a re-read.

Works with any service that honours ``If-Match`` and ``If-None-Match: *`` on
``PutObject``: AWS S3, MinIO, Cloudflare R2, Google Cloud Storage through its S3
interoperability API, and others. The constructor checks this (three small writes to
``<prefix>.conditional-write-probe``) and refuses a service that ignores either header
with :class:`ConfigurationError`, since fencing on it would be a silent no-op.

Outcomes are never guessed. boto3's automatic retries are off for this store's client:
a retried conditional PUT whose first attempt did land would be refused by its own
write. A PUT whose reply is lost (connection dropped or timed out after the request was
sent, or a 5xx answer) raises :class:`BackendUnavailable` saying the outcome is unknown;
``highest_token`` and ``read`` tell what happened.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..errors import BackendUnavailable, ConfigurationError, FencingCoordError, InvalidArgumentType
from ..validation import check_positive_seconds
from .base import FencedOutcome, Store, admits
from .s3_state import ResourceState, decode, encode

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from mypy_boto3_s3.client import S3Client

__all__ = ["S3Store"]

_log = logging.getLogger(__name__)

# "Someone else wrote first": redo the cycle.
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"})
# Refusals that retrying cannot fix.
_CONFIG_CODES = frozenset({"NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                           "AllAccessDisabled", "InvalidBucketName", "NotImplemented", "AuthorizationHeaderMalformed"})
# A decision taken on a state and the new state to put (None: nothing to write).
Change = Callable[[ResourceState], tuple[FencedOutcome, ResourceState | None]]


class S3Store(Store):
    """Resources as objects under ``prefix`` in ``bucket``; see the module docstring.

    ``session`` (a ``boto3.Session``) supplies credentials and region (default: boto3's
    usual chain); ``endpoint_url`` points at a non-AWS service; ``config`` is a
    ``botocore.config.Config`` merged under this store's own settings (no automatic
    retries, ``timeout`` for connecting and for each reply). ``contention_timeout``
    bounds how long one operation keeps redoing its cycle while others win the race
    (then :class:`BackendUnavailable`; nothing was written). Thread-safe, and safe across
    processes and hosts. Needs ``pip install 'fencing-coord[s3]'``.
    """

    def __init__(self, bucket: str, *, prefix: str = "fencing-coord/", endpoint_url: str | None = None,
                 region_name: str | None = None, session: boto3.Session | None = None, config: Config | None = None,
                 timeout: float = 10.0, contention_timeout: float = 30.0) -> None:
        for name, value in (("bucket", bucket), ("prefix", prefix)):
            if not isinstance(value, str):
                raise InvalidArgumentType(f"{name} must be a str, not {type(value).__name__}")
        seconds = check_positive_seconds(timeout, "timeout")
        self.contention_timeout = check_positive_seconds(contention_timeout, "contention_timeout")
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise ConfigurationError("S3Store needs boto3: pip install 'fencing-coord[s3]'") from exc
        own = Config(connect_timeout=seconds, read_timeout=seconds, retries={"total_max_attempts": 1},
                     request_checksum_calculation="when_required", response_checksum_validation="when_required")
        merged = own if config is None else config.merge(own)
        self.bucket, self.prefix = bucket, prefix
        self.what = f"S3 store s3://{bucket}/{prefix}"
        with _mapped(self.what, "create the client"):
            self.client: S3Client = (session or boto3.Session()).client(
                "s3", endpoint_url=endpoint_url, region_name=region_name, config=merged)
        self._mutex = threading.Lock()
        self._cache: dict[str, tuple[str, ResourceState]] = {}
        self._check_conditional_writes()

    def __repr__(self) -> str:
        return f"<{self.what}>"

    def close(self) -> None:
        """Close the client's connections. Idempotent."""
        self.client.close()

    # -- the Store interface -----------------------------------------------------------

    def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        def change(state: ResourceState) -> tuple[FencedOutcome, ResourceState | None]:
            before = state.max_token
            if not admits(before, token, strict):
                return FencedOutcome(False, before), None
            raised = token if before is None else max(before, token)
            return FencedOutcome(True, before), ResourceState(raised, {**state.values, key: value})

        return self._update(resource, change, cached=True)

    def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        def change(state: ResourceState) -> tuple[FencedOutcome, ResourceState | None]:
            before = state.max_token
            if not admits(before, token, strict):
                return FencedOutcome(False, before), None
            outcome = FencedOutcome(True, before, state.values.get(key))
            if before == token:  # nothing to raise: the state just read is the answer
                return outcome, None
            return outcome, ResourceState(token, state.values)

        # Never from the cache: a read must see the latest value.
        return self._update(resource, change, cached=False)

    def plain_write(self, resource: str, key: str, value: bytes) -> None:
        def change(state: ResourceState) -> tuple[FencedOutcome, ResourceState | None]:
            return FencedOutcome(True, state.max_token), ResourceState(state.max_token, {**state.values, key: value})

        self._update(resource, change, cached=True)

    def plain_read(self, resource: str, key: str) -> bytes | None:
        return self._get(resource)[1].values.get(key)

    def highest_token(self, resource: str) -> int | None:
        return self._get(resource)[1].max_token

    # -- the conditional-write cycle ---------------------------------------------------

    def _update(self, resource: str, change: Change, *, cached: bool) -> FencedOutcome:
        """Redo read-decide-put until the put lands or nothing needs writing."""
        deadline = time.monotonic() + self.contention_timeout
        with self._mutex:
            known = self._cache.get(resource) if cached else None
        etag, state = known if known is not None else self._get(resource)
        while True:
            outcome, new = change(state)
            if new is None:
                return outcome
            if self._put(resource, new, etag):
                return outcome
            if time.monotonic() >= deadline:
                raise BackendUnavailable(f"{self.what}: other writers kept winning the race on {resource!r} for"
                                         f" {self.contention_timeout} s; nothing was written")
            etag, state = self._get(resource)

    def _get(self, resource: str) -> tuple[str | None, ResourceState]:
        """The current ETag (None: no object) and state; refreshes the cache."""
        key = self._key(resource)
        with _mapped(self.what, f"read {key}"):
            try:
                reply = self.client.get_object(Bucket=self.bucket, Key=key)
                body = reply["Body"].read()
            except self.client.exceptions.NoSuchKey:
                return None, ResourceState()
        state = decode(body, f"s3://{self.bucket}/{key}")
        self._remember(resource, reply["ETag"], state)
        return reply["ETag"], state

    def _put(self, resource: str, state: ResourceState, etag: str | None) -> bool:
        """Put ``state`` if the object is still ``etag`` (None: still absent). True if it
        landed, False if the condition failed; BackendUnavailable if nobody can tell."""
        key = self._key(resource)
        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        with _mapped(self.what, f"write {key}", unknown_outcome=True):
            try:
                reply = self.client.put_object(Bucket=self.bucket, Key=key, Body=encode(state),
                                               ContentType="application/octet-stream", **condition)  # type: ignore[arg-type]
            except Exception as exc:
                if _code(exc) in _CONFLICT_CODES:
                    _log.debug("%s: %s changed since it was read; reading again", self.what, key)
                    return False
                raise
        self._remember(resource, reply["ETag"], state)
        return True

    def _remember(self, resource: str, etag: str, state: ResourceState) -> None:
        with self._mutex:
            self._cache[resource] = (etag, state)

    def _key(self, resource: str) -> str:
        # Quoted, so that a name is one key segment whatever characters it holds.
        return self.prefix + quote(resource, safe="")

    def _check_conditional_writes(self) -> None:
        """Refuse a service that ignores If-None-Match or If-Match (see the module docstring)."""
        key = self.prefix + ".conditional-write-probe"
        body = uuid.uuid4().hex.encode()
        with _mapped(self.what, f"check conditional writes on {key}"):
            try:  # create it, unless an earlier store already did
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
            except Exception as exc:
                if _code(exc) not in _CONFLICT_CODES:
                    raise
            for header, condition in (("If-None-Match: *", {"IfNoneMatch": "*"}),
                                      ("If-Match", {"IfMatch": '"00000000000000000000000000000000"'})):
                try:
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **condition)  # type: ignore[arg-type]
                except Exception as exc:
                    if _code(exc) in _CONFLICT_CODES:
                        continue
                    raise
                raise ConfigurationError(f"{self.what}: the service ignored {header} on PutObject, so it cannot"
                                         " fence writes; use a service that honours conditional writes")


def _code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ClientError, else None."""
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code is not None else None


class _mapped:  # lower case: reads like a function, ``with _mapped(what, doing):``
    """Turn botocore errors into ours, chained. With ``unknown_outcome`` (a write that
    may have been sent) a transport failure or 5xx says the outcome is unknown."""

    __slots__ = ("doing", "unknown", "what")

    def __init__(self, what: str, doing: str, *, unknown_outcome: bool = False) -> None:
        self.what, self.doing, self.unknown = what, doing, unknown_outcome

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, FencingCoordError) or not isinstance(exc, Exception):
            return
        import botocore.exceptions as bx

        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        failed = f"{self.what} could not {self.doing}: {detail}"
        if isinstance(exc, bx.ClientError):
            code = _code(exc) or ""
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if code in _CONFIG_CODES or (400 <= status < 500 and code not in ("SlowDown", "RequestTimeout")):
                raise ConfigurationError(f"{failed}; retrying will not help (check the bucket, the credentials"
                                         " and the endpoint)") from exc
            raise BackendUnavailable(failed + self._outcome()) from exc
        if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError | bx.ParamValidationError):
            raise ConfigurationError(f"{failed}; retrying will not help") from exc
        if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError):
            raise BackendUnavailable(failed + (": nothing was sent" if self.unknown else "")) from exc
        if isinstance(exc, bx.BotoCoreError | OSError):
            raise BackendUnavailable(failed + self._outcome()) from exc

    def _outcome(self) -> str:
        return "; the write was sent and its outcome is unknown" if self.unknown else ""
