"""``fencing-coord status``: holder, token and waiters of each lock, as a table or JSON,
read from a real server by a separate process."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

from fencing_coord import Grant, LockBackend, connect

from .helpers import cli

pytestmark = pytest.mark.etcd


@pytest.fixture
def contended(etcd_url: str, namespace: str) -> Iterator[tuple[Grant, list[str]]]:
    """Lock ``orders`` held by one client with two others queued behind it, in order;
    yields the holder's grant and the waiters' identities."""
    holder = connect(etcd_url, namespace=namespace, identity="holder-a")
    grant = holder.acquire("orders")
    waiters: list[LockBackend] = []
    threads = []
    for name in ("waiter-b", "waiter-c"):
        backend = connect(etcd_url, namespace=namespace, identity=name)
        waiters.append(backend)
        queued = threading.Event()
        thread = threading.Thread(
            target=lambda b=backend, q=queued: b.release(b.acquire("orders", on_queued=q.set)), daemon=True
        )
        thread.start()
        assert queued.wait(10), f"{name} did not queue"
        threads.append(thread)
    try:
        yield grant, ["waiter-b", "waiter-c"]
    finally:
        holder.close()  # releases: the waiters get the lock in turn, release it and end
        for thread in threads:
            thread.join(10)
        for backend in waiters:
            backend.close()


def test_json_shows_holder_token_and_waiters_in_order(
    etcd_url: str, namespace: str, contended: tuple[Grant, list[str]]
) -> None:
    grant, waiters = contended
    result = cli("status", "--url", etcd_url, "--namespace", namespace, "--json", "orders", "idle")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["namespace"] == namespace
    assert report["locks"] == [
        {"name": "orders", "holder": "holder-a", "token": grant.token, "waiters": waiters},
        {"name": "idle", "holder": None, "token": None, "waiters": []},
    ]


def test_table_lists_every_lock_when_no_name_is_given(
    etcd_url: str, namespace: str, contended: tuple[Grant, list[str]]
) -> None:
    grant, _ = contended
    result = cli("status", "--url", etcd_url, "--namespace", namespace)
    assert result.returncode == 0, result.stderr
    header, row, *rest = result.stdout.splitlines()
    assert header.split() == ["LOCK", "HOLDER", "TOKEN", "WAITERS"]
    assert row.split() == ["orders", "holder-a", str(grant.token), "waiter-b,", "waiter-c"]
    assert rest == []


def test_an_empty_namespace_says_so(etcd_url: str, namespace: str) -> None:
    result = cli("status", "--url", etcd_url, "--namespace", namespace)
    assert result.returncode == 0, result.stderr
    assert "no locks are held or waited for" in result.stdout
    assert json.loads(cli("status", "--url", etcd_url, "--namespace", namespace, "--json").stdout)["locks"] == []


def test_status_on_zookeeper(zookeeper_url: str, namespace: str) -> None:
    with connect(zookeeper_url, namespace=namespace, identity="zk-holder") as backend, backend.lock("jobs") as grant:
        result = cli("status", "--url", zookeeper_url, "--namespace", namespace, "--json", "jobs")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["locks"] == [
        {"name": "jobs", "holder": "zk-holder", "token": grant.token, "waiters": []}
    ]
