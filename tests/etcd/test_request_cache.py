"""The put-last transactions a queue keeps (issue 13, contention): a process that takes
a lock again and again sends the transaction it built the first time, and what is kept
stays bounded whatever the number of lock names, leases, values or grants."""

from __future__ import annotations

from fencing_coord.backends.etcd.places import LineRequests, QueueReads
from fencing_coord.backends.etcd.session import Lease
from fencing_coord.deadlines import RequestBudget

from .conftest import Connect

PREFIX = b"/ns/locks/orders/"
PROMPT = 5.0


def _line(reads: QueueReads, value: bytes = b"me") -> LineRequests:
    return LineRequests(PREFIX, reads, "orders", value, RequestBudget.until(None, 5.0))


def test_the_same_key_lease_and_value_get_the_same_transaction_and_others_their_own() -> None:
    reads = QueueReads(PREFIX)
    lease, other = Lease(id=0x2A, ttl=10, confirmed_until=0.0), Lease(id=0x2B, ttl=10, confirmed_until=0.0)
    line = _line(reads)
    first = line.put_last_request(PREFIX + b"2a-0", lease)
    assert _line(reads).put_last_request(PREFIX + b"2a-0", lease) is first
    assert first.success[0].request_put.lease == 0x2A
    assert first.success[0].request_put.value == b"me"
    differing = [line.put_last_request(PREFIX + b"2a-1", lease), line.put_last_request(PREFIX + b"2a-0", other),
                 _line(reads, b"you").put_last_request(PREFIX + b"2a-0", lease)]
    assert all(request is not first and request != first for request in differing)
    assert _line(reads, b"you").put_last_request(PREFIX + b"2a-0", lease).success[0].request_put.value == b"you"


def test_a_queue_keeps_a_bounded_number_of_transactions() -> None:
    reads = QueueReads(PREFIX)
    line = _line(reads)
    for lease_id in range(50):
        lease = Lease(id=lease_id, ttl=10, confirmed_until=0.0)
        for slot in range(20):
            request = line.put_last_request(line.new_key(lease, slot), lease)
            assert request.success[0].request_put.key == line.new_key(lease, slot)
            assert 0 < len(reads.puts) <= QueueReads.PUTS_KEPT


def test_many_names_and_grants_keep_a_bounded_number_of_requests(connect: Connect) -> None:
    backend = connect()
    queues = backend._queues
    held = [backend.acquire(f"held-{i}", timeout=PROMPT) for i in range(6)]  # six slots of one lease
    for i in range(200):
        backend.release(backend.acquire(f"lock-{i}", timeout=PROMPT))
        backend.release(backend.acquire("orders", timeout=PROMPT))
    kept = list(queues._reads.values())
    assert len(kept) <= 32
    assert all(len(reads.puts) <= QueueReads.PUTS_KEPT for reads in kept)
    assert sum(len(reads.puts) for reads in kept) <= 32 * QueueReads.PUTS_KEPT
    for grant in held:
        assert backend.release(grant)
