"""The first grant of a lock whose parents are missing (a new namespace): the missing
ancestors are created in one round trip, not walked up and down one at a time (issue
13: import + connect + first grant), and an ancestor's refusal is still the error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kazoo.security import READ_ACL_UNSAFE

import fencing_coord as fc
from fencing_coord.backends.zookeeper.aio_backend import AsyncZooKeeperBackend
from fencing_coord.backends.zookeeper.grant import ZooKeeperGrant
from fencing_coord.backends.zookeeper.makepath import ancestors
from fencing_coord.testing.aio_fixtures import run_guarded

from .conftest import ZooKeeperTarget
from .test_backend import _Requests
from .test_startup_modules import loaded_by_a_first_grant

pytestmark = pytest.mark.zookeeper

PROMPT = 30.0

_PARENTS = ["Create", "Create", "Create", "Create"]  # four ancestors' creates: the root's answers "exists"
#: The requests of a first grant in a new namespace: the listing goes out behind the
#: create, which finds no parent, so it is sent again after the parents' creates. Unless
#: kazoo's threads answered the create before the caller sent that listing (a rare race):
#: it then went out behind the parents' creates, or behind the create sent again.
FIRST_GRANT = (
    ["Create2", "GetChildren2", *_PARENTS, "Create2", "GetChildren2"],
    ["Create2", *_PARENTS, "GetChildren2", "Create2", "GetChildren2"],
    ["Create2", *_PARENTS, "Create2", "GetChildren2"],
)


def test_ancestors_are_listed_top_down_without_the_root() -> None:
    assert ancestors("/a/b/c") == ["/a", "/a/b"]
    assert ancestors("/a/b/prefix-") == ["/a", "/a/b"]
    assert ancestors("/a") == []


def test_a_first_grant_in_a_new_namespace_sends_the_parents_creates_together(make: Any, operator: Any) -> None:
    backend = make()
    sent = _Requests(backend)
    grant = backend.acquire("orders", timeout=PROMPT)
    # The node's create finds no parent (the listing sent behind it neither: see .behind);
    # the four ancestors' creates (the root's answered "exists") and the node's again go out
    # together; then the queue is listed. kazoo's makepath walked up with an exists per
    # level and down with a create per level.
    assert sent.since(0) in FIRST_GRANT
    assert isinstance(grant, ZooKeeperGrant)
    assert operator.get_children(backend.lock_path("orders")) == [grant.entry.node]
    mark = len(sent.sent)
    assert backend.release(grant) is True
    backend.release(backend.acquire("orders", timeout=PROMPT))
    assert sent.since(mark) == ["Delete", "Create2", "GetChildren2", "Delete"]  # the parents are there now


def test_an_ancestor_that_refuses_the_create_is_the_error(make: Any, operator: Any) -> None:
    backend = make()
    namespace_node = backend.lock_path("orders").rsplit("/locks/", 1)[0]
    operator.create(namespace_node, makepath=True, acl=READ_ACL_UNSAFE)  # nobody may create under it
    with pytest.raises(fc.ConfigurationError):
        backend.acquire("orders", timeout=PROMPT)
    assert operator.get_children(namespace_node) == []


# -- the asyncio front end: its create is settled on kazoo's connection thread (see makepath)


async def _connect(url: str, namespace: str) -> AsyncZooKeeperBackend:
    backend = await fc.aio.connect(url, namespace=namespace, ttl=4)
    assert isinstance(backend, AsyncZooKeeperBackend)
    return backend


def test_async_first_grant_in_a_new_namespace_sends_the_parents_creates_together(
        zk_standalone: ZooKeeperTarget, namespace: str, operator: Any) -> None:
    async def main() -> None:
        async with await _connect(zk_standalone.url, namespace) as backend:
            sent = _Requests(backend)
            grant = await backend.acquire("orders", timeout=PROMPT)
            assert sent.since(0) in FIRST_GRANT
            assert isinstance(grant, ZooKeeperGrant)
            assert grant.entry.path.startswith(backend.lock_path("orders") + "/")
            children = await asyncio.to_thread(operator.get_children, backend.lock_path("orders"))
            assert children == [grant.entry.node]
            assert await backend.release(grant) is True

    run_guarded(main)


def test_async_an_ancestor_that_refuses_the_create_is_the_error(zk_standalone: ZooKeeperTarget, namespace: str,
                                                                 operator: Any) -> None:
    async def main() -> None:
        async with await _connect(zk_standalone.url, namespace) as backend:
            namespace_node = backend.lock_path("orders").rsplit("/locks/", 1)[0]
            await asyncio.to_thread(operator.create, namespace_node, makepath=True, acl=READ_ACL_UNSAFE)
            with pytest.raises(fc.ConfigurationError):
                await backend.acquire("orders", timeout=PROMPT)
            assert await asyncio.to_thread(operator.get_children, namespace_node) == []

    run_guarded(main)


def test_async_nodes_get_the_creator_acl_with_credentials(zk_standalone: ZooKeeperTarget, namespace: str) -> None:
    alice = zk_standalone.raw_client(auth_data=[("digest", "alice:s3cret")])

    async def main() -> None:
        url = zk_standalone.url.replace("zookeeper://", "zookeeper://alice:s3cret@") + f"/digest-{namespace}"
        async with await _connect(url, namespace) as backend:
            grant = await backend.acquire("orders", timeout=PROMPT)
            assert isinstance(grant, ZooKeeperGrant)
            acls, _ = await asyncio.to_thread(alice.get_acls, grant.entry.path)
            assert [(acl.id.scheme, acl.id.id.split(":")[0]) for acl in acls] == [("digest", "alice")]
            assert await backend.release(grant) is True

    try:
        run_guarded(main)
    finally:
        alice.stop()
        alice.close()


def test_import_connect_and_a_first_grant_load_neither_typing_nor_dataclasses(zk_standalone: ZooKeeperTarget,
                                                                             namespace: str) -> None:
    # Importing typing and making dataclasses (the public values, the NamedTuples, the
    # fair queue's protocols) cost about 10 ms of CPU: a fifth of what a process pays
    # beyond kazoo's own before its first grant (issue 13: <= 1.2x kazoo).
    loaded = loaded_by_a_first_grant(zk_standalone.url, namespace)
    assert not {"typing", "dataclasses", "fencing_coord.fairqueue_protocols"} & loaded
