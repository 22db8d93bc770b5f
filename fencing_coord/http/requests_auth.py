"""``RequestsFencingAuth``: the same client wrapper for ``requests``.

    with backend.lock("orders", timeout=5) as grant:
        session = requests.Session()
        session.auth = RequestsFencingAuth(grant)
        session.post(url + "/pay", json=order)   # StaleTokenError if a newer holder got there first

``auth=`` wraps another requests auth (a ``(user, password)`` tuple or an ``AuthBase``).
Needs ``pip install 'fencing-coord[http]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests
import requests.auth

from ..bound import fence_of
from ..errors import InvalidArgumentType
from ..stores.base import check_store_token
from ..validation import check_name
from .protocol import ERROR_HEADER, RESOURCE_HEADER, TOKEN_HEADER, refusal_error

if TYPE_CHECKING:
    from ..election import Term
    from ..interface import Grant

__all__ = ["RequestsFencingAuth"]

InnerAuth = requests.auth.AuthBase | tuple[str, str] | None


class RequestsFencingAuth(requests.auth.AuthBase):
    """Adds ``Fencing-Token``/``Fencing-Resource`` for ``holder`` (a Grant or a Term;
    ``resource`` overrides its name) to every request; raises
    :class:`~fencing_coord.StaleTokenError` on the receiver's 409, and the errors of
    :func:`~fencing_coord.http.protocol.refusal_error` on its 428, 400 and 503."""

    def __init__(self, holder: Grant | Term, resource: str | None = None, *, auth: InnerAuth = None) -> None:
        token, name = fence_of(holder, resource)
        self._init(token, name, auth)

    @classmethod
    def for_token(cls, token: int, resource: str, *, auth: InnerAuth = None) -> RequestsFencingAuth:
        """For a token received from elsewhere (another process, a job's arguments)."""
        made = cls.__new__(cls)
        made._init(check_store_token(token), check_name(resource, "resource name"), auth)
        return made

    def _init(self, token: int, resource: str, auth: InnerAuth) -> None:
        if isinstance(auth, tuple):
            auth = requests.auth.HTTPBasicAuth(*auth)
        if auth is not None and not isinstance(auth, requests.auth.AuthBase):
            raise InvalidArgumentType(
                f"auth must be a requests AuthBase or (user, password), not {type(auth).__name__}")
        self.token, self.resource, self.inner = token, resource, auth
        self._headers = {TOKEN_HEADER: str(token), RESOURCE_HEADER: resource}

    def __repr__(self) -> str:
        return f"RequestsFencingAuth({self.resource!r}, token={self.token})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.inner is not None:
            request = self.inner(request)
        request.headers.update(self._headers)
        request.register_hook("response", _raise_for_refusal)  # type: ignore[no-untyped-call]
        return request


def _raise_for_refusal(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    error_kind = response.headers.get(ERROR_HEADER)
    if error_kind is None:
        return
    request = f"{response.request.method} {response.request.url}"
    error = refusal_error(response.status_code, error_kind, response.content, request)
    if error is not None:
        response.close()
        raise error
