"""``zookeepers://``: ZooKeeper over TLS with client certificates, against a real ZooKeeper
3.8 serving a Netty ``secureClientPort`` (the ``zk_tls`` session fixture), and the mistakes
a user can make with it, each a ConfigurationError that names TLS."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.backends.zookeeper import ZooKeeperBackend, ZooKeeperStore
from fencing_coord.gate import FencedResource
from fencing_coord.servers.tls import TLSFiles, make_certificates
from fencing_coord.servers.zookeeper import ZooKeeperMember
from fencing_coord.testing import LockBackendConformance

from .conftest import ZooKeeperFixtures, ZooKeeperTarget

pytestmark = pytest.mark.zookeeper

#: Generous for a mistake that must be reported before the timeout runs out.
TIMEOUT = 15.0


class TestZooKeeperOverTLS(LockBackendConformance, ZooKeeperFixtures):
    """The whole lock conformance suite over TLS with a client certificate (the suite's
    client processes get the same zookeepers:// URL)."""

    target_fixture = "zk_tls"


def _files(target: ZooKeeperTarget) -> TLSFiles:
    assert target.ensemble is not None
    assert target.ensemble.tls is not None
    return target.ensemble.tls


def _member(target: ZooKeeperTarget) -> ZooKeeperMember:
    assert target.ensemble is not None
    return target.ensemble.members[0]


def _connect(url: str, **options: Any) -> ZooKeeperBackend:
    options.setdefault("namespace", f"tls-{uuid.uuid4().hex[:8]}")
    options.setdefault("ttl", 4)
    backend = fc.connect(url, **options)
    assert isinstance(backend, ZooKeeperBackend)
    return backend


def _refused(url: str, timeout: float = TIMEOUT) -> tuple[fc.ConfigurationError, float]:
    """Connect to ``url``, which must fail with a ConfigurationError; it and the seconds it took."""
    started = time.monotonic()
    with pytest.raises(fc.ConfigurationError) as info:
        fc.connect(url, timeout=timeout, ttl=4)
    return info.value, time.monotonic() - started


def _messages(exc: BaseException) -> str:
    """str and repr of ``exc`` and of every exception it chains."""
    texts = []
    current: BaseException | None = exc
    while current is not None:
        texts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


# -- over TLS ---------------------------------------------------------------------------------


def test_locks_store_and_digest_credentials_over_tls(zk_tls: ZooKeeperTarget) -> None:
    url = zk_tls.url.replace("zookeepers://", "zookeepers://alice:s3cret@")
    namespace = f"tls-{uuid.uuid4().hex[:8]}"
    with _connect(url, namespace=namespace) as backend, _connect(url, namespace=namespace) as other:
        grant = backend.acquire("orders", timeout=30)
        assert other.try_acquire("orders") is None
        assert other.describe("orders").token == grant.token
        resource = FencedResource(ZooKeeperStore(backend))
        assert resource.write("orders", "k1", b"v", token=grant.token).accepted
        assert backend.release(grant) is True
        later = other.acquire("orders", timeout=30)
        assert later.token > grant.token
        assert resource.write("orders", "k1", b"new", token=later.token).accepted
        assert not resource.write("orders", "k1", b"stale", token=grant.token).accepted


def test_tls_and_plain_clients_share_the_locks_of_one_server(zk_tls: ZooKeeperTarget) -> None:
    """The TLS port serves the same data as the plain port: one lock, one token order."""
    namespace = f"tls-{uuid.uuid4().hex[:8]}"
    plain_url = "zookeeper://" + _member(zk_tls).endpoint
    with _connect(zk_tls.url, namespace=namespace) as secure, _connect(plain_url, namespace=namespace) as plain:
        grant = secure.acquire("shared", timeout=30)
        assert plain.try_acquire("shared") is None
        secure.release(grant)
        assert plain.acquire("shared", timeout=30).token > grant.token


def test_an_election_over_tls(zk_tls: ZooKeeperTarget) -> None:
    namespace = f"tls-{uuid.uuid4().hex[:8]}"
    with _connect(zk_tls.url, namespace=namespace) as first, _connect(zk_tls.url, namespace=namespace) as second:
        term = first.election("scheduler").campaign(timeout=30, value=b"http://a:8080")
        leader = second.election("scheduler").leader()
        assert leader is not None
        assert (leader.identity, leader.value, leader.token) == (first.identity, b"http://a:8080", term.token)
        queued = threading.Event()
        terms: list[Any] = []
        thread = threading.Thread(
            target=lambda: terms.append(second.election("scheduler").campaign(timeout=30, on_queued=queued.set)))
        thread.start()
        assert queued.wait(30)
        term.resign()
        thread.join(30)
        assert len(terms) == 1
        assert terms[0].token > term.token
        leader = first.election("scheduler").leader()
        assert leader is not None
        assert leader.identity == second.identity


def test_zks_is_an_alias_of_zookeepers(zk_tls: ZooKeeperTarget) -> None:
    with _connect(zk_tls.url.replace("zookeepers://", "zks://")) as backend:
        assert backend.try_acquire("alias") is not None


def test_the_server_names_its_tls_url(zk_tls: ZooKeeperTarget) -> None:
    files, member = _files(zk_tls), _member(zk_tls)
    assert zk_tls.url == f"zookeepers://{member.secure_endpoint}?ca={files.ca}&cert={files.client_cert}&key={files.client_key}"
    assert member.secure_port not in (None, member.client_port)


# -- mistakes with a server: reported as ConfigurationError before the timeout ------------------


def test_a_server_certificate_from_another_ca_is_a_configuration_error(
        zk_tls: ZooKeeperTarget, tmp_path: Path) -> None:
    files = _files(zk_tls)
    other_ca = make_certificates(tmp_path).ca
    url = zk_tls.url.replace(f"ca={files.ca}", f"ca={other_ca}").replace("zookeepers://", "zookeepers://alice:s3cret@")
    error, seconds = _refused(url)
    assert seconds < TIMEOUT / 2, f"reported after {seconds:.1f} s, as a timeout would be"
    assert "TLS: the certificate of ZooKeeper" in str(error)
    assert f"ca={other_ca}" in str(error)
    assert "s3cret" not in _messages(error)


def test_a_missing_client_certificate_is_a_configuration_error(zk_tls: ZooKeeperTarget) -> None:
    url = f"zookeepers://{_member(zk_tls).secure_endpoint}?ca={_files(zk_tls).ca}"
    error, seconds = _refused(url)
    assert seconds < TIMEOUT / 2, f"reported after {seconds:.1f} s, as a timeout would be"
    assert "TLS" in str(error)
    assert "wants a client certificate: give cert= and key=" in str(error)


def test_a_client_certificate_from_another_ca_is_a_configuration_error(
        zk_tls: ZooKeeperTarget, tmp_path: Path) -> None:
    stranger = make_certificates(tmp_path)
    url = (f"zookeepers://{_member(zk_tls).secure_endpoint}?ca={_files(zk_tls).ca}"
           f"&cert={stranger.client_cert}&key={stranger.client_key}")
    error, seconds = _refused(url)
    assert seconds < TIMEOUT / 2, f"reported after {seconds:.1f} s, as a timeout would be"
    assert "TLS" in str(error)
    assert f"cert={stranger.client_cert} must be signed by a CA the server trusts" in str(error)


def test_a_plain_client_on_the_tls_port_is_a_configuration_error(zk_tls: ZooKeeperTarget) -> None:
    error, seconds = _refused(f"zookeeper://{_member(zk_tls).secure_endpoint}")
    assert seconds < TIMEOUT / 2, f"reported after {seconds:.1f} s, as a timeout would be"
    assert "speaks TLS" in str(error)
    assert "use zookeepers://" in str(error)


def test_a_tls_client_on_the_plain_port_is_a_configuration_error(zk_tls: ZooKeeperTarget) -> None:
    error, seconds = _refused(f"zookeepers://{_member(zk_tls).endpoint}?{_files(zk_tls).query()}")
    assert seconds < TIMEOUT / 2, f"reported after {seconds:.1f} s, as a timeout would be"
    assert "speaks plain ZooKeeper, not TLS" in str(error)
    assert "secureClientPort" in str(error)


@pytest.fixture
def hangs_up() -> Iterator[int]:
    """A port that reads a client's first message and hangs up without a word (neither
    a ZooKeeper nor a TLS server): a fault, for the verdicts at the timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(1.0)
                with contextlib.suppress(OSError):
                    connection.recv(4096)  # read first: a close with unread data would be a reset

    thread = threading.Thread(target=serve, name="hangs-up", daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    done.set()
    thread.join(5)
    listener.close()


def test_a_tls_client_whose_every_handshake_is_cut_gets_a_tls_configuration_error(
        zk_tls: ZooKeeperTarget, hangs_up: int) -> None:
    error, seconds = _refused(f"zookeepers://127.0.0.1:{hangs_up}?{_files(zk_tls).query()}", timeout=1.5)
    assert "TLS: no handshake with ZooKeeper" in str(error)
    assert "secureClientPort" in str(error)
    assert seconds >= 1.4, "nothing told it was TLS before the timeout"


def test_a_plain_client_hung_up_on_is_unavailable_not_misconfigured(hangs_up: int) -> None:
    """Hanging up is no proof of TLS: the probe asks, and this port does not speak it."""
    with pytest.raises(fc.BackendUnavailable):
        fc.connect(f"zookeeper://127.0.0.1:{hangs_up}", timeout=1.5)


def test_zookeepers_defaults_to_port_2281(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    with pytest.raises(fc.BackendUnavailable, match=r"127\.0\.0\.1:2281"):
        fc.connect(f"zookeepers://127.0.0.1?ca={files.ca}", timeout=0.5)


# -- mistakes in the URL: refused before connecting ---------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not on PATH (needed to make test certificates)")
    return make_certificates(tmp_path_factory.mktemp("url-certs"))


@pytest.mark.parametrize("scheme", ["zookeeper", "zk"])
@pytest.mark.parametrize("option", ["ca", "cert", "key"])
def test_tls_files_without_tls_are_a_configuration_error(certificates: TLSFiles, scheme: str, option: str) -> None:
    path = {"ca": certificates.ca, "cert": certificates.client_cert, "key": certificates.client_key}[option]
    with pytest.raises(fc.ConfigurationError, match="need TLS; use zookeepers://"):
        fc.connect(f"{scheme}://127.0.0.1:1?{option}={path}", timeout=0.5)


@pytest.mark.parametrize("option", ["cert", "key"])
def test_half_a_client_certificate_is_a_configuration_error(certificates: TLSFiles, option: str) -> None:
    path = certificates.client_cert if option == "cert" else certificates.client_key
    with pytest.raises(fc.ConfigurationError, match="both cert= and key="):
        fc.connect(f"zookeepers://127.0.0.1:1?ca={certificates.ca}&{option}={path}", timeout=0.5)


@pytest.mark.parametrize("option", ["ca", "cert", "key"])
def test_unreadable_files_are_a_configuration_error(certificates: TLSFiles, tmp_path: Path, option: str) -> None:
    query = {"ca": str(certificates.ca), "cert": str(certificates.client_cert), "key": str(certificates.client_key)}
    for bad, reason in ((tmp_path / "missing.pem", "No such file"), (tmp_path, "Is a directory")):
        url = "zookeepers://127.0.0.1:1?" + "&".join(f"{k}={bad if k == option else v}" for k, v in query.items())
        with pytest.raises(fc.ConfigurationError, match=f"option {option}=.*cannot read.*{reason}"):
            fc.connect(url, timeout=0.5)


def test_files_that_are_not_the_right_pem_are_a_configuration_error(certificates: TLSFiles) -> None:
    base = "zookeepers://127.0.0.1:1?"
    with pytest.raises(fc.ConfigurationError, match="holds no PEM certificate"):
        fc.connect(f"{base}ca={certificates.client_key}", timeout=0.5)
    with pytest.raises(fc.ConfigurationError, match="not a PEM certificate and its matching private key"):
        fc.connect(f"{base}cert={certificates.client_cert}&key={certificates.server_key}", timeout=0.5)
    with pytest.raises(fc.ConfigurationError, match="not a PEM certificate"):
        fc.connect(f"{base}cert={certificates.ca}&key={certificates.client_key}", timeout=0.5)


def test_an_encrypted_key_is_refused_without_a_prompt_or_a_secret(certificates: TLSFiles, tmp_path: Path) -> None:
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", str(certificates.client_key), "-aes256", "-passout",
                    "pass:hunter2-passphrase", "-out", str(encrypted)], check=True, capture_output=True, timeout=30)
    url = f"zookeepers://u:s3cret@127.0.0.1:1?ca={certificates.ca}&cert={certificates.client_cert}&key={encrypted}"
    with pytest.raises(fc.ConfigurationError, match="is encrypted; give an unencrypted PEM key") as info:
        fc.connect(url, timeout=0.5)
    text = _messages(info.value)
    key_body = [line for line in encrypted.read_text().splitlines() if not line.startswith("-----")]
    assert "s3cret" not in text
    assert "hunter2" not in text
    assert not any(line in text for line in key_body)
