"""``import fencing_coord`` stays cheap: it imports no backend, no client library, no SQL
store and no package metadata; connecting to one of our own schemes scans no metadata."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Top-level modules that must not be imported by ``import fencing_coord`` alone.
HEAVY = ("etcd3", "grpc", "kazoo", "redis", "psycopg", "boto3", "sqlite3", "importlib.metadata", "socket", "uuid")


def _modules_after(code: str) -> set[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_import_loads_no_backend_client_library_or_sql_store() -> None:
    loaded = _modules_after("import fencing_coord")
    assert not [m for m in loaded if m.startswith("fencing_coord.backends")]
    assert not [m for m in loaded if m in HEAVY or m.split(".")[0] in HEAVY]
    assert "fencing_coord.stores.sqlite" not in loaded
    assert "fencing_coord.stores.postgres" not in loaded


def test_sql_stores_are_still_importable_by_name() -> None:
    import fencing_coord.stores as stores
    from fencing_coord.stores.postgres import PostgresStore
    from fencing_coord.stores.sqlite import SQLiteStore

    assert stores.SQLiteStore is SQLiteStore
    assert stores.PostgresStore is PostgresStore


def test_connecting_to_our_own_scheme_scans_no_package_metadata() -> None:
    loaded = _modules_after("import fencing_coord as fc\nfc.connect('memory://x').close()")
    assert "importlib.metadata" not in loaded


def test_import_loads_only_the_package_and_its_exceptions() -> None:
    # Every other public name is imported when first used (issue 13: import <= 30 ms).
    loaded = _modules_after("import fencing_coord")
    ours = {m for m in loaded if m.startswith("fencing_coord")}
    assert ours == {"fencing_coord", "fencing_coord.errors"}
    assert not {"typing", "dataclasses", "fencing_coord.stores", "fencing_coord.gate"} & loaded


def test_connect_and_a_grant_load_no_gate_store_audit_or_rollout() -> None:
    loaded = _modules_after("import fencing_coord as fc\n"
                            "with fc.connect('memory://x') as backend:\n"
                            "    backend.release(backend.acquire('a', timeout=1))")
    assert not {"fencing_coord.gate", "fencing_coord.audit", "fencing_coord.rollout", "fencing_coord.bound",
                "fencing_coord.stores", "hashlib"} & loaded


def test_printable_ascii_names_load_no_unicode_database() -> None:
    # unicodedata costs about a millisecond to load (issue 13: startup); it is needed
    # only to classify the characters of a name that is not printable ASCII.
    loaded = _modules_after("import fencing_coord as fc\n"
                            "with fc.connect('memory://x') as backend:\n"
                            "    backend.release(backend.acquire('a-lock:1', timeout=1))")
    assert "unicodedata" not in loaded
    loaded = _modules_after("import fencing_coord as fc\n"
                            "with fc.connect('memory://x') as backend:\n"
                            "    backend.release(backend.acquire('verrou-\u00e9', timeout=1))\n"
                            "    try:\n"
                            "        backend.acquire('a\u200bb', timeout=1)\n"
                            "    except fc.InvalidArgument:\n"
                            "        pass\n"
                            "    else:\n"
                            "        raise SystemExit('a name with U+200B was accepted')")
    assert "unicodedata" in loaded


def test_a_backend_package_loads_its_store_when_first_named() -> None:
    for backend, store in (("etcd", "EtcdStore"), ("zookeeper", "ZooKeeperStore")):
        loaded = _modules_after(f"import fencing_coord.backends.{backend}")
        assert f"fencing_coord.backends.{backend}.store" not in loaded
        assert "fencing_coord.stores" not in loaded
        loaded = _modules_after(f"from fencing_coord.backends.{backend} import {store}\n"
                                f"import fencing_coord.stores as s\nassert s.{store} is {store}")
        assert f"fencing_coord.backends.{backend}.store" in loaded


def test_every_public_name_resolves_lazily_to_its_home() -> None:
    import fencing_coord as fc
    from fencing_coord import config, gate, interface, stores

    assert fc.connect is config.connect
    assert fc.FencedResource is gate.FencedResource
    assert fc.Grant is interface.Grant
    assert fc.stores is stores
    assert set(fc.__all__) <= set(dir(fc))
    with pytest.raises(AttributeError, match="not_a_name"):
        fc.not_a_name  # type: ignore[attr-defined]  # noqa: B018


def test_the_async_api_resolves_our_own_schemes_without_package_metadata() -> None:
    """Every scheme of ours, the TLS ones included, is resolved for fc.aio as for
    fc.connect: no scan of the installed distributions (tens of ms on the event loop)."""
    for scheme in ("memory", "etcd", "etcds", "zookeeper", "zk", "zookeepers", "zks"):
        loaded = _modules_after("import fencing_coord as fc\nfrom fencing_coord.aio.config import backend_class\n"
                                f"backend_class(fc.parse_url('{scheme}://127.0.0.1:1'))")
        assert "importlib.metadata" not in loaded, scheme


def test_the_zookeeper_backend_loads_no_asyncio_and_no_onlooker_modules() -> None:
    # connect() + acquire() need neither asyncio (the async runner's, a third of the
    # import time) nor the leader readers and queue describers (issue 13: startup).
    loaded = _modules_after("import fencing_coord.backends.zookeeper")
    assert "asyncio" not in loaded
    assert not {"fencing_coord.backends.zookeeper.election", "fencing_coord.backends.zookeeper.members"} & loaded
    loaded = _modules_after("from fencing_coord.backends.zookeeper import election, members")
    assert {"fencing_coord.backends.zookeeper.election", "fencing_coord.backends.zookeeper.members"} <= loaded


def test_the_zookeeper_backend_makes_no_dataclass_and_compiles_no_foreign_pattern() -> None:
    # A dataclass costs about a millisecond to make, a regex about a quarter: the values
    # on the grant path, the public ones included, are written out (fencing_coord.typeless),
    # and the patterns of other clients' nodes are compiled when a queue first holds one
    # (issue 13: startup). _Control is the script's own, to show the probe records.
    script = ("import dataclasses\n"
              "made = []\n"
              "process = dataclasses._process_class\n"
              "def recording(cls, *args):\n"
              "    made.append(cls.__qualname__)\n"
              "    return process(cls, *args)\n"
              "dataclasses._process_class = recording\n"
              "@dataclasses.dataclass\n"
              "class _Control:\n"
              "    x: int\n"
              "import fencing_coord.backends.zookeeper\n"
              "from fencing_coord.backends.zookeeper import names\n"
              "print(json.dumps([sorted(made), names._foreign_patterns.cache_info().currsize]))")
    out = subprocess.run([sys.executable, "-c", f"import json\n{script}"], check=True, capture_output=True,
                         text=True).stdout
    made, compiled = json.loads(out.splitlines()[-1])
    assert made, "no dataclass recorded: the probe no longer sees dataclasses being made"
    assert set(made) <= {"BackendURL", "Capabilities", "CommonOptions", "Instrument", "Leader", "LockState",
                         "_Control"}, made
    assert made == ["_Control"]
    assert compiled == 0


def test_a_grant_without_metrics_loads_no_observability() -> None:
    # Until a Metrics is made (which imports the module) there are none to take.
    loaded = _modules_after("import fencing_coord as fc\n"
                            "with fc.connect('memory://x') as backend:\n"
                            "    backend.release(backend.acquire('a', timeout=1))\n"
                            "    backend.try_acquire('a')\n")
    assert "fencing_coord.observability" not in loaded
    loaded = _modules_after("import fencing_coord as fc\n"
                            "from fencing_coord.observability import Metrics, RecordingSink, set_metrics\n"
                            "sink = RecordingSink()\n"
                            "set_metrics(Metrics(sink))\n"
                            "with fc.connect('memory://x') as backend:\n"
                            "    backend.release(backend.acquire('a', timeout=1))\n"
                            "assert sink.samples(), 'the installed metrics took nothing'\n")
    assert "fencing_coord.observability" in loaded


def test_the_zookeeper_backend_and_the_core_it_uses_load_neither_typing_nor_dataclasses() -> None:
    # About 10 ms of CPU before a first grant (issue 13: <= 1.2x kazoo); the typed names
    # are imported for mypy only, the values written out (fencing_coord.typeless).
    loaded = _modules_after("import fencing_coord.backends.zookeeper\nimport fencing_coord.config\n"
                            "fencing_coord.config.parse_url('zk://h:1?ttl=3')")
    assert "fencing_coord.backends.zookeeper.queue" in loaded
    assert not {"typing", "dataclasses", "fencing_coord.fairqueue_protocols"} & loaded


def test_the_fair_queue_protocols_resolve_when_first_named() -> None:
    from fencing_coord import fairqueue, fairqueue_protocols, spi

    assert fairqueue.QueueDriver is spi.QueueDriver is fairqueue_protocols.QueueDriver
    assert fairqueue.Place is spi.Place is fairqueue_protocols.Place
    assert fairqueue.AsyncQueueDriver is fairqueue_protocols.AsyncQueueDriver
    assert set(fairqueue.__all__) <= set(dir(fairqueue)) | {"AsyncQueueDriver", "Place", "QueueDriver"}
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        spi.Nothing  # type: ignore[attr-defined]  # noqa: B018
