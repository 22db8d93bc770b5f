"""etcds:// with TLS client certificates and etcd's user/password authentication."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import fencing_coord as fc
from fencing_coord.backends.etcd import EtcdBackend, EtcdStore
from fencing_coord.gate import FencedResource
from fencing_coord.servers.etcd import EtcdServer

from .conftest import make_certificates, require_etcd_binary, require_etcdctl

pytestmark = pytest.mark.etcd


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """A TLS-only node with client certificates required and authentication enabled:
    user ``app`` (password ``secret``) may read and write ``/fencing-coord/``, user
    ``stranger`` (password ``secret``) only ``/elsewhere/``."""
    require_etcd_binary()
    require_etcdctl()
    tls = make_certificates(tmp_path_factory.mktemp("certs"))
    with EtcdServer(tls=tls) as server:
        ctl = [require_etcdctl(), f"--endpoints={server.endpoints}", f"--cacert={tls.ca}", f"--cert={tls.client_cert}",
               f"--key={tls.client_key}"]
        for args in (
            ["user", "add", "root", "--new-user-password=root-secret"],
            ["role", "add", "app"],
            ["role", "grant-permission", "app", "--prefix=true", "readwrite", "/fencing-coord/"],
            ["user", "add", "app", "--new-user-password=secret"],
            ["user", "grant-role", "app", "app"],
            ["role", "add", "stranger"],
            ["role", "grant-permission", "stranger", "--prefix=true", "readwrite", "/elsewhere/"],
            ["user", "add", "stranger", "--new-user-password=secret"],
            ["user", "grant-role", "stranger", "stranger"],
            ["auth", "enable"],
        ):
            subprocess.run(ctl + args, check=True, capture_output=True, timeout=30)
        yield server


def _as(server: EtcdServer, credentials: str) -> str:
    return server.url.replace("etcds://", f"etcds://{credentials}@")


def test_locks_over_tls_with_a_password(secured: EtcdServer) -> None:
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    with fc.connect(_as(secured, "app:secret"), namespace=namespace, ttl=3) as backend, \
            fc.connect(_as(secured, "app:secret"), namespace=namespace, ttl=3) as other:
        grant = backend.acquire("orders", timeout=30)
        assert other.try_acquire("orders") is None
        assert other.describe("orders").token == grant.token
        assert isinstance(backend, EtcdBackend)
        resource = FencedResource(EtcdStore(backend))
        assert resource.write("orders", "k1", b"v", token=grant.token).accepted
        assert backend.release(grant) is True
        assert other.try_acquire("orders") is not None


def test_wrong_password_is_a_configuration_error(secured: EtcdServer) -> None:
    with pytest.raises(fc.ConfigurationError, match="user, password") as info:
        fc.connect(_as(secured, "app:wrong"), timeout=5)
    assert "wrong" not in str(info.value)  # the password is not repeated in messages


def test_missing_permission_is_a_configuration_error(secured: EtcdServer) -> None:
    with fc.connect(_as(secured, "stranger:secret"), ttl=3) as backend, \
            pytest.raises(fc.ConfigurationError, match="permission"):
        backend.acquire("orders", timeout=5)


def test_plaintext_to_a_tls_port_is_unavailable(secured: EtcdServer) -> None:
    plain = "etcd://" + secured.member.endpoint
    with pytest.raises(fc.BackendUnavailable):
        fc.connect(plain, timeout=1)


def test_untrusted_server_certificate_is_refused(secured: EtcdServer, tmp_path: Path) -> None:
    assert secured.tls is not None
    other_ca = make_certificates(tmp_path).ca
    url = _as(secured, "app:secret").replace(f"ca={secured.tls.ca}", f"ca={other_ca}")
    with pytest.raises(fc.BackendUnavailable):
        fc.connect(url, timeout=1)


def test_an_untrusted_server_certificate_writes_nothing_on_stderr(secured: EtcdServer, tmp_path: Path) -> None:
    """gRPC's C core logged "Handshake failed ... CERTIFICATE_VERIFY_FAILED" on stderr at
    every reconnection attempt; the library says it once, in its exception."""
    assert secured.tls is not None
    other_ca = make_certificates(tmp_path).ca
    url = _as(secured, "app:secret").replace(f"ca={secured.tls.ca}", f"ca={other_ca}")
    code = ("import sys, fencing_coord as fc\n"
            "try:\n    fc.connect(sys.argv[1], timeout=1)\n"
            "except fc.BackendUnavailable:\n    print('unavailable')\n")
    library = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, timeout=60)
    assert library.stdout == "unavailable\n", library.stderr
    assert library.stderr == ""
    command = subprocess.run([sys.executable, "-m", "fencing_coord.cli", "status", "--url", url + "&timeout=1"],
                             capture_output=True, text=True, timeout=60)
    assert command.stderr.startswith("fencing-coord: error: ")
    assert len(command.stderr.splitlines()) == 1, command.stderr
