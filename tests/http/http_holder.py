"""A lock holder in its own process that acts through HTTP, for the pause scenario.

    python -m tests.http.http_holder LOCK_URL SERVER_URL RESOURCE [--ttl 2] [--namespace NS]

Commands on stdin, one JSON answer per line on stdout:

``acquire``     -> {"event": "acquired", "token": t}
``post VALUE``  -> {"event": "post", "status": 200, "error": null} or, when the client
                   wrapper raised, {"event": "post", "status": null, "error": "StaleTokenError", "message": m}
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx

import fencing_coord as fc
from fencing_coord.http import HttpxFencingAuth


def say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("lock_url")
    parser.add_argument("server_url")
    parser.add_argument("resource")
    parser.add_argument("--ttl", type=float, default=2)
    parser.add_argument("--namespace", default="default")
    args = parser.parse_args()
    with fc.connect(args.lock_url, ttl=args.ttl, namespace=args.namespace) as backend:
        say(event="ready")
        client: httpx.Client | None = None
        for line in sys.stdin:
            command, _, rest = line.strip().partition(" ")
            if command == "acquire":
                grant = backend.acquire(args.resource, timeout=30)
                client = httpx.Client(base_url=args.server_url, auth=HttpxFencingAuth(grant), timeout=30)
                say(event="acquired", token=grant.token)
            elif command == "post":
                assert client is not None
                try:
                    reply = client.post(f"/ledger/{args.resource}", content=rest.encode())
                    say(event="post", status=reply.status_code, error=None)
                except fc.FencingCoordError as exc:
                    say(event="post", status=None, error=type(exc).__name__, message=str(exc))
            elif command == "exit":
                break
        if client is not None:
            client.close()


if __name__ == "__main__":
    main()
