"""Backend URLs and their options: :func:`parse_url`, :class:`BackendURL`, :class:`OptionReader`.

``scheme://[user[:password]@]host[:port][,host[:port]...][/path][?option=value&...]``

A URL that does not fit is a :class:`ConfigurationError`, never a default: an empty
entry in the host list, an empty port after ``:``, an unclosed ``[``. ``etcd://`` and
``zookeeper://`` need at least one host (:meth:`BackendURL.host_list`); ``memory://``
takes a table name in the host's place and may omit it (the default table). Percent-
encode reserved characters in a password (``@ : / ? # %``).

Query options are strings; keyword arguments to :func:`fencing_coord.connect` override
them. Every backend reads the common options through :meth:`OptionReader.common`; each
backend's class docstring lists its own.

=========== ========================================== ==========
option      meaning                                    default
=========== ========================================== ==========
ttl         lease/session lifetime, seconds            10
namespace   key prefix isolating one application       ``default``
timeout     seconds to wait for the service per call   5
identity    holder identity shown to other clients     host:pid:random
=========== ========================================== ==========
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, unquote

from .errors import ConfigurationError
from .typeless import FrozenValue
from .validation import MAX_SECONDS, check_name, check_positive_seconds

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")

__all__ = ["BackendURL", "CommonOptions", "OptionReader", "parse_url"]


class BackendURL(FrozenValue):
    """A parsed backend URL. ``hosts`` keeps the order given; ``port`` is None when
    the URL has none. ``path`` is the part after the hosts, without the leading ``/``.
    A frozen value (:class:`~fencing_coord.typeless.FrozenValue`)."""

    __match_args__ = ("scheme", "hosts", "path", "username", "password", "query", "raw")

    scheme: str
    hosts: tuple[tuple[str, int | None], ...]
    path: str = ""
    username: str | None = None
    password: str | None = None
    query: Mapping[str, str]
    raw: str = ""

    def __init__(self, scheme: str, hosts: tuple[tuple[str, int | None], ...], path: str = "",
                 username: str | None = None, password: str | None = None, query: Mapping[str, str] | None = None,
                 raw: str = "") -> None:
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "hosts", hosts)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "username", username)
        object.__setattr__(self, "password", password)
        object.__setattr__(self, "query", {} if query is None else query)
        object.__setattr__(self, "raw", raw)

    def host_list(self, default_port: int) -> list[tuple[str, int]]:
        """The hosts with ``default_port`` filled in.

        Raises :class:`ConfigurationError` when the URL names no host: a scheme that
        connects to servers calls this, and there is no host it could mean by default
        (``memory://``, whose "host" is a table name, may omit it and does not call this).
        """
        if not self.hosts:
            raise ConfigurationError(
                f"{self.redacted()!r}: {self.scheme}:// needs at least one host, "
                f"e.g. {self.scheme}://127.0.0.1:{default_port}"
            )
        return [(h, p if p is not None else default_port) for h, p in self.hosts]

    def redacted(self) -> str:
        """The URL with any password replaced by ``***`` (for messages and logs)."""
        if self.password is None:
            return self.raw
        scheme, _, rest = self.raw.partition("://")
        netloc = rest.partition("?")[0].partition("/")[0]  # where parse_url found the credentials
        at = netloc.rfind("@")
        user = netloc[:at].partition(":")[0]
        return f"{scheme}://{user}:***@{rest[at + 1:]}"

    def scrub(self, text: str) -> str:
        """``text`` with this URL's password (as written and percent-decoded) replaced by ``***``."""
        if not self.password:
            return text
        netloc = self.raw.partition("://")[2].partition("?")[0].partition("/")[0]
        written = netloc.rpartition("@")[0].partition(":")[2]
        for secret in sorted({s for s in (written, self.password) if s}, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    @staticmethod
    def redact(raw: str) -> str:
        """``raw``, a URL that may not parse, with everything from the first ``:`` of its
        user information to its last ``@`` replaced by ``***``. Errors met while parsing
        show this: it hides a password even when unencoded ``/``, ``?``, ``#`` or ``@``
        in it would make parse_url split the URL elsewhere."""
        scheme, sep, rest = raw.partition("://")
        if not sep or "@" in scheme:
            scheme, sep, rest = "", "", raw
        at = rest.rfind("@")
        colon = rest.find(":", 0, max(at, 0))
        if colon < 0:
            return raw
        return f"{scheme}{sep}{rest[:colon]}:***@{rest[at + 1:]}"

    def __repr__(self) -> str:
        return f"BackendURL({self.redacted()!r})"


def parse_url(url: str) -> BackendURL:
    """Parse ``url`` into a :class:`BackendURL`; :class:`ConfigurationError` if malformed.

    Error messages show the URL with its password hidden (:meth:`BackendURL.redact`).
    A password must have its reserved characters percent-encoded (``@`` ``:`` ``/``
    ``?`` ``#`` ``%`` as ``%40`` ``%3A`` ``%2F`` ``%3F`` ``%23`` ``%25``).
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"a backend URL must be a str, not {type(url).__name__}")
    label = BackendURL.redact(url)
    if "://" not in url:
        raise ConfigurationError(
            f"{label!r} is not a backend URL; expected scheme://host[:port], "
            "e.g. etcd://127.0.0.1:2379, zookeeper://127.0.0.1:2181/app or memory://demo"
        )
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if not scheme.replace("+", "").replace("-", "").isalnum():
        raise ConfigurationError(f"{label!r}: the scheme before :// may hold only letters, digits, '+' and '-'")
    if "#" in rest:
        raise ConfigurationError(f"{label!r}: a backend URL takes no #fragment (write a '#' in a password as %23)")
    # urlsplit rejects comma-separated host lists with ports, so split by hand.
    rest, _, query = rest.partition("?")
    netloc, _, tail = rest.partition("/")
    if "@" in tail:
        # Most likely a password with an unencoded '/': refuse rather than connect to
        # a "host" made of half a password.
        raise ConfigurationError(
            f"{label!r}: '@' after the host; percent-encode '/', '?', '#' and '@' in a password "
            "(%2F, %3F, %23, %40), and write an '@' of the path as %40"
        )
    username = password = None
    if "@" in netloc:
        creds, netloc = netloc.rsplit("@", 1)
        user, _, pw = creds.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if _ else None
    hosts: list[tuple[str, int | None]] = []
    if netloc.strip():  # no host at all is for the backend to judge (see BackendURL.host_list)
        for item in (h.strip() for h in netloc.split(",")):
            if not item:
                raise ConfigurationError(f"{label!r}: empty entry in the host list (a stray ',')")
            hosts.append(_parse_host(item, label))
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        # Not chained: the parser's message quotes the query, which may hold part of a
        # password with an unencoded '?'.
        raise ConfigurationError(f"{label!r}: malformed query string; expected ?option=value&option=value") from None
    options: dict[str, str] = {}
    for key, value in pairs:
        if key in options:
            raise ConfigurationError(f"{label!r}: option {key!r} is given twice")
        options[key] = value
    return BackendURL(scheme, tuple(hosts), unquote(tail), username, password, options, url)


def _parse_host(item: str, label: str) -> tuple[str, int | None]:
    """One ``host[:port]`` of the host list; ``label`` is the redacted URL for messages."""

    def shown(piece: str) -> str:
        # Quote a piece only if the redacted URL shows it anyway: with a mangled password
        # (unencoded '?'), a "host" or "port" may be a part of it.
        return repr(piece) if piece in label else "(hidden: it overlaps the password)"

    if item.startswith("["):
        host, bracket, after = item[1:].partition("]")
        if not bracket:
            raise ConfigurationError(f"{label!r}: IPv6 host {shown(item)} lacks its closing ']'")
        if after and not after.startswith(":"):
            raise ConfigurationError(f"{label!r}: bad IPv6 host {shown(item)}")
        colon, port_text = after[:1], after[1:]
    elif item.count(":") == 1:
        host, port_text = item.split(":")
        colon = ":"
    elif ":" in item:
        raise ConfigurationError(f"{label!r}: put IPv6 addresses in brackets, e.g. [::1]:2379")
    else:
        host, colon, port_text = item, "", ""
    if not host:
        raise ConfigurationError(f"{label!r}: empty host in {shown(item)}")
    if not colon:
        return host, None
    if not port_text:
        raise ConfigurationError(f"{label!r}: empty port after {shown(host)}: (omit the ':' for the default port)")
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ConfigurationError(
            f"{label!r}: port {shown(port_text)} of {shown(host)} is not a number from 1 to 65535"
        )
    return host, int(port_text)


class CommonOptions(FrozenValue):
    """The options every backend takes, validated (see the module docstring). A frozen
    value (:class:`~fencing_coord.typeless.FrozenValue`)."""

    __match_args__ = ("ttl", "namespace", "timeout", "identity")

    ttl: float
    namespace: str
    timeout: float
    identity: str

    def __init__(self, ttl: float, namespace: str, timeout: float, identity: str) -> None:
        object.__setattr__(self, "ttl", ttl)
        object.__setattr__(self, "namespace", namespace)
        object.__setattr__(self, "timeout", timeout)
        object.__setattr__(self, "identity", identity)


def _default_identity() -> str:
    import socket  # at connect, not at ``import fencing_coord``

    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


class OptionReader:
    """Reads options for a backend: keyword options win over query strings, every
    value is validated, and options nobody read are reported by :meth:`finish`."""

    def __init__(self, url: BackendURL, options: Mapping[str, Any]) -> None:
        self.url = url
        self._values: dict[str, Any] = {**url.query, **options}
        self._read: set[str] = set()

    def get(self, name: str, default: T, parse: Callable[[Any], T]) -> T:
        """Return option ``name`` parsed by ``parse`` (ValueError/TypeError from it
        become :class:`ConfigurationError`), or ``default`` when absent."""
        self._read.add(name)
        if name not in self._values or self._values[name] is None:
            return default
        raw = self._values[name]
        try:
            return parse(raw)
        except (ValueError, TypeError) as exc:
            # repr() of an int of thousands of digits raises ValueError itself.
            shown = "a very large int" if isinstance(raw, int) and raw.bit_length() > 64 else repr(raw)
            raise ConfigurationError(f"{self.url.redacted() or self.url.scheme}: option {name}={shown}: {exc}") from exc

    def seconds(self, name: str, default: float, *, max_seconds: float = MAX_SECONDS) -> float:
        """A number of seconds > 0, finite and at most ``max_seconds`` (see
        :func:`~fencing_coord.validation.check_positive_seconds`)."""
        return self.get(name, default, lambda v: check_positive_seconds(_number(v), name, max_seconds=max_seconds))

    def string(self, name: str, default: str) -> str:
        return self.get(name, default, _string)

    def common(self, *, ttl: float = 10.0, timeout: float = 5.0, max_ttl: float = MAX_SECONDS) -> CommonOptions:
        """Read ``ttl``, ``namespace``, ``timeout`` and ``identity``. A backend whose service
        cannot hold every ttl up to :data:`~fencing_coord.validation.MAX_SECONDS` passes
        its own ``max_ttl`` (ZooKeeper: ``INT32_MILLISECONDS``); a larger ttl is then a
        :class:`ConfigurationError` naming the bound."""
        namespace = self.get("namespace", "default", lambda v: check_name(_string(v), "namespace"))
        identity = self.get("identity", "", _string) or _default_identity()
        ttl_seconds = self.seconds("ttl", ttl, max_seconds=max_ttl)
        return CommonOptions(ttl_seconds, namespace, self.seconds("timeout", timeout), identity)

    def finish(self) -> None:
        """Raise :class:`ConfigurationError` for any option no one asked for."""
        unknown = sorted(set(self._values) - self._read)
        if unknown:
            known = ", ".join(sorted(self._read))
            raise ConfigurationError(
                f"{self.url.scheme}:// does not take option(s) {', '.join(unknown)}; it takes: {known}"
            )


def _number(value: Any) -> int | float:
    # An int stays an int: float() of a huge one raises OverflowError, and the range
    # check compares it exactly.
    if isinstance(value, str):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, not {type(value).__name__}")
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a str, not {type(value).__name__}")
    return value
