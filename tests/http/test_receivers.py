"""The ASGI receiver on a real uvicorn process, over real HTTP, for each gate: refusals
and their bodies, and what the handler's work does when the handler fails."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import Served


def post(served: Served, path: str, resource: str | None, token: str | int | None, body: str = "") -> httpx.Response:
    headers = {}
    if token is not None:
        headers["Fencing-Token"] = str(token)
    if resource is not None:
        headers["Fencing-Resource"] = resource
    return httpx.post(served.url + path, headers=headers, content=body.encode(), timeout=30)


def ledger(served: Served, resource: str, key: str) -> Any:
    reply = httpx.get(f"{served.url}/ledger/{key}", params={"resource": resource}, timeout=30)
    return None if reply.status_code == 404 else reply.json()


def test_a_stale_token_is_409_naming_the_highest(served: Served, resource: str) -> None:
    key = resource
    first = post(served, f"/ledger/{key}", resource, 5, "from 5")
    assert (first.status_code, first.json()) == (200, {"token": 5, "highest_before": None})
    assert post(served, f"/ledger/{key}", resource, 9, "from 9").json() == {"token": 9, "highest_before": 5}
    assert post(served, f"/ledger/{key}", resource, 9, "again 9").json() == {"token": 9, "highest_before": 9}

    stale = post(served, f"/ledger/{key}", resource, 7, "from 7")
    assert stale.status_code == 409
    assert stale.headers["Fencing-Error"] == "stale-token"
    assert stale.json() == {"error": "stale-token", "detail": "stale token 7 < 9", "resource": resource,
                            "token": 7, "highest_token": 9}
    assert ledger(served, resource, key) == {"value": "again 9", "token": 9}


@pytest.mark.parametrize(("headers", "status", "detail"), [
    ({}, 428, "this endpoint requires a Fencing-Token header"),
    ({"Fencing-Token": "abc"}, 400, "Fencing-Token must be a decimal integer, got 'abc'"),
    ({"Fencing-Token": "-1"}, 400, "Fencing-Token must be a decimal integer"),
    ({"Fencing-Token": "+5"}, 400, "Fencing-Token must be a decimal integer"),
    ({"Fencing-Token": "1_000"}, 400, "Fencing-Token must be a decimal integer"),
    ({"Fencing-Token": "9223372036854775808"}, 400, "does not fit in 64 bits"),
    ({"Fencing-Token": "99999999999999999999"}, 400, "Fencing-Token must be a decimal integer"),
    ({"Fencing-Token": "5", "Fencing-Resource": "a/b"}, 400, "Fencing-Resource: resource name 'a/b' contains '/'"),
    ({"Fencing-Token": "5", "Fencing-Resource": ""}, 400, "must be a non-empty string"),
], ids=["missing", "letters", "negative", "plus", "underscore", "too-big", "too-long", "slash", "empty-resource"])
def test_missing_or_malformed_fences(served: Served, resource: str, headers: dict[str, str], status: int,
                                     detail: str) -> None:
    headers = {"Fencing-Resource": resource, **headers}
    reply = httpx.post(f"{served.url}/ledger/{resource}", headers=headers, content=b"x", timeout=30)
    assert reply.status_code == status
    assert reply.headers["Fencing-Error"] == ("token-required" if status == 428 else "bad-fence")
    assert detail in reply.json()["detail"]
    assert ledger(served, resource, resource) is None  # the handler never ran


def test_a_token_without_a_resource_is_400(served: Served, resource: str) -> None:
    reply = post(served, f"/ledger/{resource}", None, 5)
    assert (reply.status_code, reply.json()["detail"]) == (400, "Fencing-Token without Fencing-Resource")


def test_unfenced_requests_pass_where_no_token_is_required(served: Served, resource: str) -> None:
    assert httpx.get(f"{served.url}/ledger/missing", params={"resource": resource}).status_code == 404
    assert httpx.get(f"{served.url}/plain").text == "ok"


@pytest.mark.parametrize("path", ["/fail", "/error"])
def test_a_failed_handler_rolls_back_its_work_and_its_token(served: Served, resource: str, path: str) -> None:
    key = resource
    assert post(served, f"{path}/{key}", resource, 5).status_code == 500
    if served.kind == "store":
        # The documented caveat: a store admission is not a transaction. The handler's
        # fenced write landed before it failed, and the admission raised the token.
        assert ledger(served, resource, key) == {"value": "from a 500" if path == "/error" else
                                                 "from a failed handler", "token": 5}
        assert post(served, f"/ledger/{key}", resource, 3).status_code == 409
        return
    assert ledger(served, resource, key) is None
    # The token was rolled back with the work: a lower token is still admitted.
    assert post(served, f"/ledger/{key}", resource, 3, "from 3").json() == {"token": 3, "highest_before": None}
    assert ledger(served, resource, key) == {"value": "from 3", "token": 3}


def test_the_receivers_import_no_client_library() -> None:
    import subprocess
    import sys

    code = ("import sys, fencing_coord.http;"
            " print(sorted(m for m in ('httpx', 'requests', 'starlette', 'psycopg', 'boto3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
