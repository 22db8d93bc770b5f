"""ZooKeeper over TLS (``zookeepers://``): the ``ca``/``cert``/``key`` options, kazoo's TLS
arguments, and the first connection, where a TLS mistake is told apart from an
unreachable server.

kazoo retries every failed connection attempt until its caller's timeout, whatever the
failure: a server certificate our CA does not trust, a client certificate the server
refuses, a plain client on a TLS port (the server hangs up without a word) or a TLS client
on a plain port all look like an unreachable ensemble, reported after the whole timeout.
:class:`FirstConnection` watches each attempt of the first connection and answers with a
:class:`ConfigurationError` naming TLS and the certificate as soon as the failure is
certain: every host refused for a certificate reason, or every host that hung up on a
plain client answers a TLS handshake, or every host that broke off a TLS handshake answers
a plain ``srvr``. At the timeout, a TLS client whose every host failed a TLS handshake
gets a ConfigurationError too; anything else stays :class:`BackendUnavailable` (the caller's).

The key must be an unencrypted PEM file: an encrypted one is refused when the URL is read
(kazoo is given an empty password, so OpenSSL never prompts on a terminal). No message
holds a key's content, only file paths.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time

from kazoo.exceptions import ConnectionDropped

from fencing_coord.errors import ConfigurationError
from fencing_coord.url import BackendURL

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, NamedTuple
else:
    from fencing_coord.typeless import NamedTuple

__all__ = ["DEFAULT_TLS_PORT", "TLS_SCHEMES", "FirstConnection", "TLSOptions", "pem_file", "tls_options"]

_log = logging.getLogger(__name__)

#: The port of ``zookeepers://`` hosts that name none (the ``secureClientPort`` of
#: ZooKeeper's documentation examples; ZooKeeper itself has no default).
DEFAULT_TLS_PORT: Final = 2281
TLS_SCHEMES: Final = ("zookeepers", "zks")

# TLS alerts with which a server refuses our client certificate (or its absence), as
# OpenSSL names them in ssl.SSLError.reason.
_REFUSED_CERTIFICATE: Final = frozenset({
    "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_EXPIRED", "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "TLSV1_ALERT_ACCESS_DENIED", "SSLV3_ALERT_HANDSHAKE_FAILURE",
})
# A probe of a host gets at most this long.
_PROBE_SECONDS: Final = 1.0


class TLSOptions(NamedTuple):
    """The PEM files of a ``zookeepers://`` URL: ``ca`` verifies the servers (None: the
    system's roots), ``cert`` and ``key`` (both or neither) are the client certificate."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def kazoo_arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``KazooClient`` for these files: the server's certificate
        is verified and must name the host as the URL writes it."""
        return {
            "use_ssl": True, "verify_certs": True, "check_hostname": True,
            "ca": self.ca, "certfile": self.cert, "keyfile": self.key,
            # Never None: with None, OpenSSL would prompt for an encrypted key's password on
            # the terminal (tls_options refused encrypted keys; the file may change since).
            "keyfile_password": "",
        }


def pem_file(value: Any) -> str:
    """Option parser: the path of a readable file (ValueError/TypeError otherwise)."""
    if not isinstance(value, str) or not value:
        raise TypeError("expected the path of a PEM file")
    try:
        with open(value, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise ValueError(f"cannot read {value!r}: {exc.strerror}") from exc
    return value


def _refuse_password() -> str:
    raise ConfigurationError("encrypted")


def tls_options(url: BackendURL, ca: str | None, cert: str | None, key: str | None) -> TLSOptions | None:
    """The TLS options of ``url`` (None for a plain scheme). Raises ConfigurationError when
    the files are given to a plain scheme, ``cert`` comes without ``key`` or the other way
    round, ``ca`` holds no PEM certificate, or ``cert``/``key`` are not a PEM certificate
    and its unencrypted private key."""
    label = url.redacted() or f"{url.scheme}://"
    if url.scheme not in TLS_SCHEMES:
        if ca is not None or cert is not None or key is not None:
            raise ConfigurationError(f"{label}: ca=, cert= and key= need TLS; use zookeepers://")
        return None
    if (cert is None) != (key is None):
        raise ConfigurationError(f"{label}: give both cert= and key= for a client certificate, or neither")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is not None:
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:
            raise ConfigurationError(f"{label}: ca={ca} holds no PEM certificate ({exc.reason or exc})") from None
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(cert, key, password=_refuse_password)
        except ConfigurationError:
            raise ConfigurationError(
                f"{label}: key={key} is encrypted; give an unencrypted PEM key (protect it with file permissions)"
            ) from None
        except ssl.SSLError as exc:
            raise ConfigurationError(
                f"{label}: cert={cert} and key={key} are not a PEM certificate and its matching private key "
                f"({exc.reason or exc})"
            ) from None
    return TLSOptions(ca, cert, key)


# -- the first connection ------------------------------------------------------------------


class _Attempt(NamedTuple):
    """How one connection attempt to one host ended (the last one counts)."""

    ssl_error: ssl.SSLError | None  # the TLS handshake or record failure, if that was it
    hung_up: bool  # the server closed or reset the connection before answering (no TLS error)


class FirstConnection:
    """Starts a kazoo client and watches its attempts until the first session, to report
    TLS mistakes as :class:`ConfigurationError` (see the module docstring). Install it
    before the client starts."""

    def __init__(self, client: Any, tls: TLSOptions | None) -> None:
        self._client = client
        self._tls = tls
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._attempts: dict[tuple[str, int], _Attempt] = {}
        self._ssl_errors: dict[tuple[str, int], ssl.SSLError] = {}  # each host's latest TLS failure
        self._probed: set[tuple[str, int]] = set()
        self._started = False
        connection = getattr(client, "_connection", None)
        original = getattr(connection, "_connect", None)
        if original is None:  # another kazoo: no diagnosis, plain timeouts
            _log.debug("kazoo has no _connection._connect; TLS failures are reported as timeouts")
            return

        def connect(host: str, hostip: str, port: int) -> Any:
            try:
                return original(host, hostip, port)
            except Exception as exc:
                if not self._started:
                    self._note(host, port, exc)
                raise
            finally:
                self._changed.set()

        connection._connect = connect  # type: ignore[union-attr]

    def _note(self, host: str, port: int, exc: Exception) -> None:
        # kazoo raises ConnectionDropped from within its handler of the socket's error
        # (which is then its context), or without one when the server hung up (a reset
        # is hanging up too, when the server closed with our request unread).
        ssl_error: ssl.SSLError | None = None
        hung_up = False
        if isinstance(exc, ConnectionDropped):
            cause = exc.__cause__ or exc.__context__
            ssl_error = cause if isinstance(cause, ssl.SSLError) else None
            hung_up = cause is None or isinstance(cause, ConnectionResetError)
        with self._lock:
            self._attempts[(host, port)] = _Attempt(ssl_error, hung_up)
            if ssl_error is not None:
                self._ssl_errors[(host, port)] = ssl_error

    def start(self, timeout: float) -> None:
        """Start the client and wait up to ``timeout`` seconds for its first session, as
        ``KazooClient.start`` does (stops and closes it and raises kazoo's timeout
        exception when none comes). Raises ConfigurationError (after closing the
        client) for a TLS mistake."""
        deadline = time.monotonic() + timeout
        live = self._client.start_async()
        try:
            while not live.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    problem = self._at_timeout(timeout)
                    if problem is not None:
                        raise ConfigurationError(problem)
                    raise self._client.handler.timeout_exception("Connection time-out")
                self._changed.wait(remaining)
                self._changed.clear()
                problem = self._certain_problem(deadline)
                if problem is not None:
                    raise ConfigurationError(problem)
        except BaseException:
            self._client.stop()
            self._client.close()
            raise
        self._started = True

    # -- verdicts --------------------------------------------------------------------------

    def _hosts(self) -> list[tuple[str, int]]:
        return [(str(h), int(p)) for h, p in self._client.hosts]

    def _last(self) -> dict[tuple[str, int], _Attempt]:
        with self._lock:
            return dict(self._attempts)

    def _certain_problem(self, deadline: float) -> str | None:
        """A ConfigurationError message once every host failed in a way only a
        configuration fixes; None while that is not certain."""
        hosts, attempts = self._hosts(), self._last()
        if any(host not in attempts for host in hosts):
            return None
        ends = [attempts[host] for host in hosts]
        if self._tls is not None:
            refusals = [_refusal(host, a.ssl_error, self._tls) for host, a in zip(hosts, ends, strict=True)]
            if all(refusals):
                return refusals[0]
            broken = [host for host, a in zip(hosts, ends, strict=True) if a.ssl_error is not None]
            if len(broken) == len(hosts) and self._all_answer(broken, _speaks_plain_zookeeper, deadline):
                return (f"ZooKeeper at {_names(hosts)} speaks plain ZooKeeper, not TLS, on that port: "
                        "name its secureClientPort in zookeepers://, or use zookeeper://")
            return None
        if all(a.hung_up for a in ends) and self._all_answer(hosts, _speaks_tls, deadline):
            return (f"ZooKeeper at {_names(hosts)} speaks TLS on that port (a plain client gets no answer): "
                    "use zookeepers:// with ca= (and cert=, key= if the server wants a client certificate)")
        return None

    def _all_answer(self, hosts: list[tuple[str, int]], probe: Any, deadline: float) -> bool:
        """Probe each host once per start (a failed probe is not repeated)."""
        for host in hosts:
            if host in self._probed:
                return False
            self._probed.add(host)
            limit = min(_PROBE_SECONDS, deadline - time.monotonic())
            if limit <= 0 or not probe(host, limit):
                return False
        return True

    def _at_timeout(self, timeout: float) -> str | None:
        """A TLS client whose every host failed in TLS (among other failures, such as a
        reset connection): a ConfigurationError message."""
        hosts = self._hosts()
        with self._lock:
            errors = [self._ssl_errors.get(host) for host in hosts]
        if self._tls is None or None in errors:
            return None
        return (f"TLS: no handshake with ZooKeeper at {_names(hosts)} succeeded within {timeout} s "
                f"({_reason(errors[0])}): is the port ZooKeeper's secureClientPort, and does it speak TLS?")


def _names(hosts: list[tuple[str, int]]) -> str:
    return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in hosts)


def _reason(error: ssl.SSLError | None) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return str(error.verify_message)
    if error is None:
        return "no TLS error"
    return str(error.reason or error.strerror or error)


def _refusal(host: tuple[str, int], error: ssl.SSLError | None, tls: TLSOptions) -> str | None:
    """The message for a TLS failure that only a configuration fixes; None for another."""
    where = _names([host])
    if isinstance(error, ssl.SSLCertVerificationError):
        trusted = f"ca={tls.ca}" if tls.ca is not None else "the system's CA certificates (no ca= given)"
        return (f"TLS: the certificate of ZooKeeper at {where} is not trusted: {error.verify_message}; ca= must "
                f"name the CA that signed the servers' certificates, which must name the host as the URL writes "
                f"it (checked against {trusted})")
    if error is not None and error.reason in _REFUSED_CERTIFICATE:
        if tls.cert is None:
            advice = "the server wants a client certificate: give cert= and key="
        else:
            advice = f"cert={tls.cert} must be signed by a CA the server trusts (and valid now)"
        return f"TLS: ZooKeeper at {where} refused the handshake ({error.reason}): {advice}"
    return None


def _speaks_tls(host: tuple[str, int], timeout: float) -> bool:
    """True when ``host`` answers a TLS handshake (completes it, or refuses it with an
    alert); the certificate is not checked (this only asks whether the port is TLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(host, timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host[0]) as tls:
            tls.do_handshake()
            return True
    except ssl.SSLError as exc:
        return "ALERT" in str(exc.reason or "")
    except OSError:
        return False


def _speaks_plain_zookeeper(host: tuple[str, int], timeout: float) -> bool:
    """True when ``host`` answers ZooKeeper's plain ``srvr`` word (whitelisted by default)."""
    try:
        with socket.create_connection(host, timeout=timeout) as sock:
            sock.sendall(b"srvr")
            return sock.recv(64).startswith(b"Zookeeper version")
    except OSError:
        return False
