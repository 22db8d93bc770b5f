"""Backend selection from configuration: URL grammar, options, entry points, errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

import fencing_coord as fc
from fencing_coord import config


def test_parse_several_hosts_path_credentials_and_options() -> None:
    url = fc.parse_url("zookeeper://alice:s%40cret@10.0.0.1:2181,[::1]:2182,zk3/app/sub?ttl=10&namespace=x")
    assert url.scheme == "zookeeper"
    assert url.hosts == (("10.0.0.1", 2181), ("::1", 2182), ("zk3", None))
    assert url.path == "app/sub"
    assert (url.username, url.password) == ("alice", "s@cret")
    assert dict(url.query) == {"ttl": "10", "namespace": "x"}
    assert url.host_list(2181)[2] == ("zk3", 2181)
    assert "s%40cret" not in url.redacted().replace("***", "")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("127.0.0.1:2379", "scheme://host"),
        ("etcd://h:99999", "port"),
        ("etcd://h:abc", "port"),
        ("etcd://::1:2379", "brackets"),
        ("etcd://h?ttl=1&ttl=2", "twice"),
        ("etcd://h#frag", "fragment"),
        ("nope://x", "no backend for scheme 'nope'"),
    ],
)
def test_bad_urls_raise_configuration_error(url: str, fragment: str) -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        fc.connect(url)
    assert fragment in str(info.value)


MALFORMED = ["", "/", "[::1", "[::1]:", "h:", "h:1,", ",h", "h,,k", "h:\u00b2", "user:pw@"]


@pytest.mark.parametrize("scheme", ["etcd", "etcds", "zookeeper", "zk"])
@pytest.mark.parametrize("rest", MALFORMED)
def test_malformed_urls_are_refused_not_defaulted(scheme: str, rest: str) -> None:
    """No silent 127.0.0.1, no dropped entry: a ConfigurationError before any connection
    (a connection attempt would end in BackendUnavailable)."""
    with pytest.raises(fc.ConfigurationError):
        fc.connect(f"{scheme}://{rest}", timeout=1).close()


def test_memory_may_omit_its_table_name() -> None:
    with fc.connect("memory://") as default, fc.connect("memory://?namespace=default") as same:
        grant = default.acquire("x", timeout=0)
        assert same.describe("x").token == grant.token
    with pytest.raises(fc.ConfigurationError, match="empty entry"):
        fc.connect("memory://a,")


def test_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        fc.connect("nope://x")
    message = str(info.value)
    assert "etcd" in message
    assert "zookeeper" in message
    assert "memory" in message
    assert config.ENTRY_POINT_GROUP in message


def test_no_url_uses_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.ENV_VAR, "memory://from-env?namespace=envns")
    with fc.connect() as backend:
        assert backend.namespace == "envns"
    monkeypatch.delenv(config.ENV_VAR)
    with pytest.raises(fc.ConfigurationError, match=config.ENV_VAR):
        fc.connect()


def test_keywords_override_the_query_string() -> None:
    with fc.connect("memory://kw?ttl=10&namespace=q", ttl=3) as backend:
        assert backend.ttl == 3.0
        assert backend.namespace == "q"


def test_unknown_option_names_the_known_ones() -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        fc.connect("memory://x?tll=10")
    assert "tll" in str(info.value)
    assert "ttl" in str(info.value)


def test_password_is_not_echoed_in_errors() -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        fc.connect("nope://bob:hunter2@h")
    assert "hunter2" not in str(info.value)


def test_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(config._BUILTIN, "broken", ("fencing_coord_no_such_module:Backend", "etcd"))
    with pytest.raises(fc.ConfigurationError) as info:
        fc.connect("broken://h")
    assert "pip install 'fencing-coord[etcd]'" in str(info.value)


def test_third_party_backend_registers_through_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "toy_backend.py").write_text(textwrap.dedent("""
        from fencing_coord.backends.memory import MemoryBackend
        class ToyBackend(MemoryBackend):
            schemes = ("toy",)
    """))
    dist = tmp_path / "toy_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[fencing_coord.backends]\ntoy = toy_backend:ToyBackend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with fc.connect("toy://table") as backend:
        assert type(backend).__name__ == "ToyBackend"
        assert backend.acquire("x", timeout=1).token >= 1
    sys.modules.pop("toy_backend", None)


def test_entry_point_to_a_non_backend_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "bad_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bad-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[fencing_coord.backends]\nbad = json:dumps\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(fc.ConfigurationError, match="not a LockBackend"):
        fc.connect("bad://x")


def test_our_schemes_are_registered_as_entry_points() -> None:
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group=config.ENTRY_POINT_GROUP)}
    assert {"memory", "etcd", "etcds", "zookeeper"} <= names
    assert set(config._BUILTIN) <= names  # every scheme we know from source is registered too


def test_backend_is_a_context_manager_that_closes() -> None:
    with fc.connect("memory://cm") as backend:
        backend.acquire("x", timeout=0)
    assert backend.closed
    with fc.connect("memory://cm") as again:
        assert again.try_acquire("x") is not None


def test_bare_backends_package_is_not_importable() -> None:
    """backends/ is installed only as fencing_coord.backends."""
    import importlib.util

    assert importlib.util.find_spec("fencing_coord.backends.memory") is not None
    spec = importlib.util.find_spec("backends")
    assert spec is None or "site-packages" not in str(spec.origin or "")
