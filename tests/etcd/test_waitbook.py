"""The waits' shared stream, without a server (:mod:`fencing_coord.backends.etcd.waitbook`):
creates answered in order, events routed by id, cancels deferred to the next create or
sent 16 at once, a refused create retiring the stream, a retired stream cancelled once
unused, an ended stream handing back its waits."""

from __future__ import annotations

from etcd3 import etcdrpc

from fencing_coord.backends.etcd.waitbook import CANCELS_AT_ONCE, Routed, Wait, WaitBook, cancel_request


def _created(watch_id: int, *, canceled: bool = False) -> etcdrpc.WatchResponse:
    return etcdrpc.WatchResponse(watch_id=watch_id, created=True, canceled=canceled)


def _event(watch_id: int, *, canceled: bool = False) -> etcdrpc.WatchResponse:
    return etcdrpc.WatchResponse(watch_id=watch_id, canceled=canceled)


def test_creates_are_answered_in_order_and_events_routed_by_id() -> None:
    book, first, second = WaitBook(0), Wait(), Wait()
    assert book.add(first, "create 1") == ("create 1",)
    assert book.add(second, "create 2") == ("create 2",)
    assert book.route(_created(7)) == Routed(wait=first)
    assert book.route(_created(8)) == Routed(wait=second)
    assert (first.id, second.id) == (7, 8)
    assert book.route(_event(8)).wait is second
    assert book.route(_event(9)).wait is None
    assert book.route(_event(7, canceled=True)).wait is first  # etcd cancelled it: forgotten
    assert book.route(_event(7)).wait is None


def test_a_closed_waits_cancel_goes_out_with_the_next_create() -> None:
    book, done, later = WaitBook(0), Wait(), Wait()
    book.add(done, "create")
    book.route(_created(3))
    assert book.close(done) == Routed()
    assert book.close(done) == Routed(), "closed once"
    assert book.add(later, "create") == (cancel_request(3), "create")


def test_cancels_go_out_sixteen_at_once() -> None:
    book, waits = WaitBook(0), [Wait() for _ in range(CANCELS_AT_ONCE)]
    for watch_id, wait in enumerate(waits):
        book.add(wait, "create")
        book.route(_created(watch_id))
    sent = [book.close(wait).send for wait in waits]
    assert sent[:-1] == [()] * (CANCELS_AT_ONCE - 1)
    assert sent[-1] == tuple(cancel_request(watch_id) for watch_id in range(CANCELS_AT_ONCE))


def test_a_create_closed_before_its_answer_is_cancelled_once_answered() -> None:
    book, early, other = WaitBook(0), Wait(), Wait()
    book.add(early, "create")
    book.add(other, "create")
    assert book.close(early) == Routed()
    assert book.route(_created(5)) == Routed(send=(cancel_request(5),))


def test_a_refused_create_retires_the_stream_and_wakes_its_wait() -> None:
    book, wait = WaitBook(0), Wait()
    book.add(wait, "create")
    assert book.route(_created(0, canceled=True)) == Routed(cancel=True, wait=wait)
    assert book.retired
    assert not book.serves(0)


def test_a_retired_stream_is_cancelled_once_its_last_wait_closes() -> None:
    book, first, second = WaitBook(0), Wait(), Wait()
    book.add(first, "create")
    book.add(second, "create")
    book.route(_created(1))
    assert book.serves(0)
    assert not book.serves(1), "another member is in use"
    assert not book.retire(), "waits are left on it"
    assert book.close(first) == Routed()
    assert book.close(second) == Routed(cancel=True), "its last wait, even unanswered"
    unused = WaitBook(0)
    assert unused.retire()


def test_an_ended_stream_hands_back_its_waits_and_asks_nothing_more() -> None:
    book, answered, unanswered = WaitBook(0), Wait(), Wait()
    book.add(answered, "create")
    book.add(unanswered, "create")
    book.route(_created(4))
    assert book.end() == [unanswered, answered]
    assert book.close(answered) == Routed()
    assert not book.retire()
    assert not book.serves(0)
