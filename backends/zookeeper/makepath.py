"""Create a node and, when its parent is missing, every missing ancestor, in two round
trips more instead of kazoo's two per path level: :func:`create_making_parents`.

kazoo's ``create(makepath=True)`` answers a missing parent with ``ensure_path``, which
walks up one ``exists`` at a time and back down one ``create`` at a time: a first grant
in a new namespace (``/fencing-coord/<ns>/locks/<name>``) took nine round trips. Here
the ancestors' creates are sent together, top down, without waiting for each other's
answer: ZooKeeper answers one session's requests in the order sent, so each create finds
its parent made by the one before, and "exists already" is the common, harmless answer.
"""

from __future__ import annotations

from kazoo.exceptions import NodeExistsError, NoNodeError

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ancestors", "create_making_parents"]


def ancestors(path: str) -> list[str]:
    """The ancestors of ``path`` below the root, top down: ``/a/b/c`` -> ``/a``, ``/a/b``.
    A sequential node's prefix ending in ``/`` names its parent as ``path`` without it."""
    parts = [part for part in path.split("/")[:-1] if part]
    return ["/" + "/".join(parts[:depth]) for depth in range(1, len(parts) + 1)]


def create_making_parents(client: Any, path: str, value: bytes, **options: Any) -> Any:
    """kazoo's ``create_async(path, value, **options)`` (``makepath`` not among them), whose
    result, on a missing parent, is the create's again after every ancestor's create
    (default ACL, empty value) was sent. An ancestor's refusal other than "exists
    already" is the result when the create still finds no parent, as kazoo's makepath
    reports it; a parent deleted again in between is made again, as kazoo does."""
    outcome = client.handler.async_result()

    def settle(result: Any, parents: list[Any]) -> None:
        # On kazoo's completion thread: every way out settles ``outcome`` or sends again.
        try:
            outcome.set(result.get())
        except NoNodeError:
            # The ancestors were answered before this create (one session's order).
            refused = [p.exception for p in parents if not isinstance(p.exception, (NodeExistsError, type(None)))]
            if refused:
                outcome.set_exception(refused[0])
            else:  # none sent yet, or a parent deleted again in between
                again()
        except Exception as exc:
            outcome.set_exception(exc)

    def again() -> None:
        try:
            attempt()
        except Exception as exc:  # kazoo refused to send (a closed client, a bad argument)
            outcome.set_exception(exc)

    def attempt(parents: list[Any] | None = None) -> None:
        sent = parents if parents is not None else [client.create_async(p) for p in ancestors(path)]
        client.create_async(path, value, **options).rawlink(lambda result: settle(result, sent))

    # The first attempt without the ancestors: their parent is there in the common case.
    attempt([])
    return outcome
