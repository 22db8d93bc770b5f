"""The client wrappers (httpx sync and async, requests) against the real receiver: they
attach the grant's fence to every request and turn its refusals into our errors."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
import requests

import fencing_coord.config as fc_config
from fencing_coord.errors import ConfigurationError, InvalidArgument, InvalidArgumentType, StaleTokenError
from fencing_coord.http import HttpxFencingAuth, RequestsFencingAuth
from fencing_coord.interface import Grant, LockBackend
from fencing_coord.testing import FakeClock

from ..gate.fault_proxy import FaultProxy
from .conftest import Served

Post = Callable[[Served, Grant, str, str], dict[str, object]]


def post_httpx(served: Served, grant: Grant, path: str, body: str) -> dict[str, object]:
    with httpx.Client(base_url=served.url, auth=HttpxFencingAuth(grant), timeout=30) as client:
        reply = client.post(path, content=body.encode())
        reply.raise_for_status()
        result: dict[str, object] = reply.json()
        return result


def post_httpx_async(served: Served, grant: Grant, path: str, body: str) -> dict[str, object]:
    async def go() -> dict[str, object]:
        async with httpx.AsyncClient(base_url=served.url, auth=HttpxFencingAuth(grant), timeout=30) as client:
            reply = await client.post(path, content=body.encode())
            reply.raise_for_status()
            result: dict[str, object] = reply.json()
            return result

    return asyncio.run(go())


def post_requests(served: Served, grant: Grant, path: str, body: str) -> dict[str, object]:
    with requests.Session() as session:
        session.auth = RequestsFencingAuth(grant)
        reply = session.post(served.url + path, data=body.encode(), timeout=30)
        reply.raise_for_status()
        result: dict[str, object] = reply.json()
        return result


CLIENTS = {"httpx": post_httpx, "httpx-async": post_httpx_async, "requests": post_requests}


@pytest.fixture
def holders() -> Iterator[tuple[FakeClock, LockBackend, LockBackend]]:
    clock = FakeClock(0.0)
    table = f"memory://http-{uuid.uuid4().hex[:8]}"
    with fc_config.connect(table, clock=clock, ttl=10) as a, fc_config.connect(table, clock=clock, ttl=10) as b:
        yield clock, a, b


@pytest.mark.parametrize("client", CLIENTS)
def test_a_paused_holders_late_request_raises_stale_token(served: Served, resource: str, client: str,
                                                          holders: tuple[FakeClock, LockBackend, LockBackend]) -> None:
    clock, a, b = holders
    post = CLIENTS[client]
    grant_a = a.acquire(resource, timeout=0)
    assert post(served, grant_a, f"/ledger/{resource}", "from A")["token"] == grant_a.token
    clock.advance(10)  # A pauses past its lease
    grant_b = b.acquire(resource, timeout=0)
    assert post(served, grant_b, f"/ledger/{resource}", "from B")["highest_before"] == grant_a.token
    refusal = f"409 Conflict: stale token {grant_a.token} < {grant_b.token}"
    with pytest.raises(StaleTokenError, match=re.escape(refusal)):
        post(served, grant_a, f"/ledger/{resource}", "late A")
    reply = httpx.get(f"{served.url}/ledger/{resource}", params={"resource": resource}).json()
    assert reply == {"value": "from B", "token": grant_b.token}


@pytest.mark.parametrize("client", CLIENTS)
def test_the_applications_own_409_is_not_a_fencing_refusal(served: Served, resource: str, client: str,
                                                           holders: tuple[FakeClock, LockBackend, LockBackend]) -> None:
    grant = holders[1].acquire(resource, timeout=0)
    with pytest.raises((httpx.HTTPStatusError, requests.HTTPError)) as caught:
        CLIENTS[client](served, grant, "/conflict", "")
    assert not isinstance(caught.value, StaleTokenError)


def test_a_stripped_or_mangled_fence_is_a_clear_error(served: Served, resource: str) -> None:
    auth = HttpxFencingAuth.for_token(5, resource)
    with FaultProxy(int(served.url.rsplit(":", 1)[1])) as proxy, httpx.Client(auth=auth, timeout=30) as client:
        proxy.rewrite = lambda data: re.sub(rb"(?im)^fencing-token:[^\r\n]*\r\n", b"", data)
        with pytest.raises(ConfigurationError, match=r"428 Precondition Required: .* does a proxy in between drop"):
            client.post(f"{proxy.endpoint}/ledger/{resource}", content=b"x")
        proxy.rewrite = lambda data: re.sub(rb"(?im)^(fencing-token:) 5\r\n", rb"\1 x\r\n", data)
        with pytest.raises(InvalidArgument, match="400 Bad Request: Fencing-Token must be a decimal integer"):
            client.post(f"{proxy.endpoint}/ledger/{resource}", content=b"x")
        with requests.Session() as session:
            session.auth = RequestsFencingAuth.for_token(5, resource)
            with pytest.raises(InvalidArgument, match="400 Bad Request"):
                session.post(f"{proxy.endpoint}/ledger/{resource}", data=b"x", timeout=30)


def test_another_auth_is_kept(served: Served, resource: str) -> None:
    fenced = HttpxFencingAuth.for_token(7, resource, auth=httpx.BasicAuth("user", "pw"))
    seen = httpx.post(f"{served.url}/echo", auth=fenced, headers={"Fencing-Token": "1"}, timeout=30).json()
    assert seen["authorization"].startswith("Basic ")
    assert (seen["fencing-token"], seen["fencing-resource"]) == ("7", resource)
    with requests.Session() as session:
        session.auth = RequestsFencingAuth.for_token(7, resource, auth=("user", "pw"))
        seen = session.post(f"{served.url}/echo", timeout=30).json()
    assert seen["authorization"].startswith("Basic ")
    assert (seen["fencing-token"], seen["fencing-resource"]) == ("7", resource)


def test_wrapper_arguments() -> None:
    with pytest.raises(InvalidArgumentType, match="expected a Grant or a Term, not int"):
        HttpxFencingAuth(5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="token must be >= 0"):
        RequestsFencingAuth.for_token(-1, "orders")
    with pytest.raises(InvalidArgument, match="contains '/'"):
        HttpxFencingAuth.for_token(1, "a/b")
    with pytest.raises(InvalidArgumentType, match=r"auth must be an httpx\.Auth, not str"):
        HttpxFencingAuth.for_token(1, "orders", auth="token")  # type: ignore[arg-type]
