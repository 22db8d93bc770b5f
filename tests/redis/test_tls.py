"""rediss://: the backend and the store over TLS, with a client certificate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import fencing_coord as fc
from fencing_coord.backends.redis import RedisStore
from fencing_coord.gate import FencedResource
from fencing_coord.servers.redis import RedisServer
from fencing_coord.servers.tls import make_certificates

from ..faults import PROMPT
from .conftest import require_redis_server

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer(tls=make_certificates(tmp_path_factory.mktemp("certs"))) as server:
        yield server


def test_locks_and_store_over_tls(tls_server: RedisServer) -> None:
    assert tls_server.url.startswith("rediss://")
    with fc.connect(tls_server.url, namespace="tls") as backend, \
            fc.connect(tls_server.url, namespace="tls") as other:
        grant = backend.acquire("orders", timeout=PROMPT)
        assert other.try_acquire("orders") is None
        backend.release(grant)
        assert other.acquire("orders", timeout=PROMPT).token > grant.token
        with RedisStore(backend) as store:
            assert FencedResource(store).write("orders", "k", b"v", token=grant.token).accepted


def test_plain_redis_url_to_a_tls_port_is_unavailable(tls_server: RedisServer) -> None:
    with pytest.raises(fc.BackendUnavailable):
        fc.connect(f"redis://{tls_server.primary.endpoint}", timeout=1)


def test_without_a_client_certificate_the_server_refuses(tls_server: RedisServer) -> None:
    assert tls_server.tls is not None
    with pytest.raises(fc.BackendUnavailable):
        fc.connect(f"rediss://{tls_server.primary.endpoint}?ca={tls_server.tls.ca}", timeout=1)


def test_an_unknown_ca_is_refused(tls_server: RedisServer, tmp_path: Path) -> None:
    stranger = make_certificates(tmp_path)
    assert tls_server.tls is not None
    url = (f"rediss://{tls_server.primary.endpoint}?ca={stranger.ca}&cert={tls_server.tls.client_cert}"
           f"&key={tls_server.tls.client_key}")
    with pytest.raises(fc.ConfigurationError, match="certificate is not trusted"):
        fc.connect(url, timeout=1)
