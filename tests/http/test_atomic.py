"""With a SQL admission, the handler's SQL and the token commit together: a successor's
request waits until the request in flight has committed, so an older holder's effect
can never land after a newer holder was admitted."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx
import pytest

from .conftest import gate_spec
from .servers import Uvicorn


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_successor_waits_for_the_request_in_flight(kind: str, tmp_path: Path, request: pytest.FixtureRequest,
                                                     resource: str) -> None:
    for fifo in ("entered", "release"):
        os.mkfifo(tmp_path / fifo)
    replies: dict[str, httpx.Response] = {}
    b_done = threading.Event()

    def send(who: str, path: str, token: int) -> None:
        headers = {"Fencing-Token": str(token), "Fencing-Resource": resource}
        replies[who] = httpx.post(f"{server.url}{path}/{resource}", headers=headers, content=who.encode(),
                                  timeout=60)
        if who == "B":
            b_done.set()

    with Uvicorn(gate_spec(kind, tmp_path, request), env={"FC_FIFO_DIR": str(tmp_path)}) as server:
        a = threading.Thread(target=send, args=("A", "/hold", 5))
        a.start()
        assert (tmp_path / "entered").read_text() == "in\n"  # A is inside its transaction
        b = threading.Thread(target=send, args=("B", "/ledger", 9))
        b.start()
        assert not b_done.wait(1.0), "B was admitted while A's transaction was open"
        (tmp_path / "release").write_text("go\n")
        a.join(60)
        b.join(60)
        stored = httpx.get(f"{server.url}/ledger/{resource}").json()
    assert replies["A"].json() == {"token": 5, "highest_before": None}
    assert replies["B"].json() == {"token": 9, "highest_before": 5}  # admitted after A's commit
    assert stored == {"value": "B", "token": 9}
