"""What a new process loads to connect to ZooKeeper and take a first grant (issue 13:
import + connect + first grant <= 1.2x kazoo): modules that only waiters, onlookers or
failures use are imported when first needed, not on that path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import ZooKeeperTarget

pytestmark = pytest.mark.zookeeper


def loaded_by_a_first_grant(url: str, namespace: str) -> set[str]:
    """The modules of a new process once it imported fencing_coord, connected to ``url``
    and took (and released) a first grant in the new ``namespace``."""
    script = ("import json, sys\n"
              "import fencing_coord as fc\n"
              f"backend = fc.connect({url!r}, namespace={namespace!r})\n"
              "grant = backend.acquire('first', timeout=30)\n"
              "assert backend.release(grant)\n"
              "backend.close()\n"
              "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True,
                         timeout=120).stdout
    loaded = set(json.loads(out.splitlines()[-1]))
    assert "fencing_coord.backends.zookeeper.queue" in loaded, "the probe no longer reaches the ZooKeeper backend"
    return loaded


def test_a_first_grant_loads_no_module_of_waiters(zk_standalone: ZooKeeperTarget, namespace: str) -> None:
    # A grant taken at once never waits: the waits' watches (.handoff for the next in
    # line, .listing_at_event further back) are imported by the first wait.
    waiting = {"fencing_coord.backends.zookeeper.handoff", "fencing_coord.backends.zookeeper.listing_at_event"}
    assert not waiting & loaded_by_a_first_grant(zk_standalone.url, namespace)


def test_a_first_grant_loads_no_module_of_failures(zk_standalone: ZooKeeperTarget, namespace: str) -> None:
    # What a kazoo failure that is not retried means (.kazoo_results.kazoo_error), and the
    # reads sent ahead of their wait (presend: listing names, describe), are imported by
    # their first use.
    assert "fencing_coord.backends.zookeeper.kazoo_results" not in loaded_by_a_first_grant(zk_standalone.url,
                                                                                         namespace)
