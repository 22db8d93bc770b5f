"""RedisStore: what is specific to it (the gate's contract, bad input and the 8-process
race run on it in tests/gate): its keys, its construction, its durability check, and data
it did not write."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.backends.redis import RedisBackend, RedisStore
from fencing_coord.gate import FencedResource
from fencing_coord.servers import free_port
from fencing_coord.servers.redis import RedisServer
from fencing_coord.stores.base import MAX_TOKEN

from .conftest import own_server, raw_client

pytestmark = pytest.mark.redis


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[Any]:
    made = raw_client(redis_server)
    yield made
    made.close()


def test_keys_hold_the_token_as_twenty_digits(redis_server: RedisServer, client: Any, namespace: str) -> None:
    with RedisStore(f"{redis_server.url}?namespace={namespace}") as store:
        resource = FencedResource(store)
        assert resource.write("orders", "k1", b"v", token=MAX_TOKEN - 1).accepted
        base = f"/fencing-coord/{namespace}/resources/orders"
        assert client.get(base + "/token") == f"{MAX_TOKEN - 1:020d}".encode()
        assert client.get(base + "/data/k1") == b"v"
        # Exact at the top of the range, where doubles could not tell the two apart.
        assert not resource.write("orders", "k1", b"w", token=MAX_TOKEN - 2).accepted
        assert resource.write("orders", "k1", b"x", token=MAX_TOKEN).accepted
        assert resource.highest_token("orders") == MAX_TOKEN


def test_a_store_shares_a_backends_connection_and_namespace(redis_server: RedisServer, namespace: str) -> None:
    with fc.connect(redis_server.url, namespace=namespace) as backend:
        assert isinstance(backend, RedisBackend)
        shared = FencedResource(RedisStore(backend))
        shared.write("a", "k", b"a", token=100)
        with RedisStore(f"{redis_server.url}?namespace={namespace}") as own:
            assert FencedResource(own).read("a", "k") == b"a"
        elsewhere = FencedResource(RedisStore(backend, namespace=namespace + "-x"))
        assert elsewhere.highest_token("a") is None
        for name in ("b", "a:data", "a*", "%2F"):
            assert shared.write(name, "k", name.encode(), token=1).accepted, name
            assert shared.read(name, "k") == name.encode()
        assert shared.highest_token("a") == 100


def test_the_lazy_import_names_the_same_class() -> None:
    from fencing_coord.stores import RedisStore as lazy

    assert lazy is RedisStore


def test_server_without_persistence_is_refused_unless_best_effort(namespace: str) -> None:
    with own_server(persistence=False) as server:
        with pytest.raises(fc.ConfigurationError, match="appendonly"):
            RedisStore(server.url)
        with RedisStore(f"{server.url}?durability=best-effort") as store:
            assert FencedResource(store).write("orders", "k", b"v", token=1).accepted


def test_replicas_durability_reports_an_unreplicated_write(namespace: str) -> None:
    with own_server(persistence=False) as server, \
            RedisStore(f"{server.url}?durability=replicas&timeout=1&namespace={namespace}") as store:
        resource = FencedResource(store)
        with pytest.raises(fc.BackendUnavailable, match="admitted on 'orders' by the primary, but only 0 of 1"):
            resource.write("orders", "k", b"v", token=3)
        # Refused writes need no replica: nothing was written.
        assert not resource.write("orders", "k", b"w", token=2).accepted


def test_foreign_data_at_a_token_key_is_a_configuration_error(redis_server: RedisServer, client: Any,
                                                              namespace: str) -> None:
    client.set(f"/fencing-coord/{namespace}/resources/orders/token", "12")
    with RedisStore(f"{redis_server.url}?namespace={namespace}") as store:
        resource = FencedResource(store)
        with pytest.raises(fc.ConfigurationError, match="did not write"):
            resource.write("orders", "k", b"v", token=13)
        with pytest.raises(fc.ConfigurationError, match="not a fencing-coord token"):
            resource.highest_token("orders")
    client.hset(f"/fencing-coord/{namespace}/resources/hashed/token", "a", "b")
    with RedisStore(f"{redis_server.url}?namespace={namespace}") as store, \
            pytest.raises(fc.ConfigurationError, match="did not write"):
        FencedResource(store).write("hashed", "k", b"v", token=1)


def test_constructor_arguments() -> None:
    with pytest.raises(fc.InvalidArgumentType, match="RedisBackend or a redis:// URL, not int"):
        RedisStore(42)
    with fc.connect("memory://store") as memory, pytest.raises(fc.InvalidArgumentType):
        RedisStore(memory)
    with pytest.raises(fc.ConfigurationError, match="redis:// or rediss://"):
        RedisStore("memory://store")
    with pytest.raises(fc.ConfigurationError, match="does not take option"):
        RedisStore("redis://127.0.0.1?ttl=5")
    with pytest.raises(fc.InvalidArgument, match="namespace"):
        RedisStore("redis://127.0.0.1", namespace="a/b")


def test_unreachable_is_unavailable_and_keeps_the_password() -> None:
    with pytest.raises(fc.BackendUnavailable) as info:
        RedisStore(f"redis://:sekrit@127.0.0.1:{free_port()}?timeout=0.5")
    assert "sekrit" not in str(info.value)


def test_a_write_whose_reply_was_lost_is_outcome_unknown(redis_server: RedisServer, namespace: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11 item 2's audit. The check-and-set script runs on the server, but its reply
    is lost with the connection (raised at redis-py's edge after the real call): the store
    must say neither accepted nor refused, but BackendUnavailable, and must not run the
    script again."""
    import redis

    import fencing_coord.backends.redis.connection as connection

    with RedisStore(f"{redis_server.url}?namespace={namespace}") as store:
        resource = FencedResource(store)
        resource.write("orders", "k", b"before", token=3).raise_for_status()
        real_evalsha = connection.evalsha
        sent: list[str] = []

        def evalsha(client: Any, script: Any, keys: Any, argv: Any) -> Any:
            real_evalsha(client, script, keys, argv)  # run by the real server
            sent.append(script.name)
            raise redis.exceptions.ConnectionError("Connection closed by server.")

        monkeypatch.setattr(connection, "evalsha", evalsha)
        with pytest.raises(fc.BackendUnavailable):
            resource.write("orders", "k", b"after", token=5)
        monkeypatch.undo()
        assert len(sent) == 1, "a write whose outcome was unknown was sent again"
        assert resource.read("orders", "k") == b"after"  # it was in fact applied
        assert resource.highest_token("orders") == 5
