"""Throwaway TLS material for local servers: :class:`TLSFiles` and :func:`make_certificates`.

Used by the etcd (``etcds://``) and ZooKeeper (``zookeepers://``) test servers. The
certificates are made with the ``openssl`` command line tool (no Python crypto library
needed), valid for two days, for ``127.0.0.1`` and ``localhost`` only: never for a server
anyone else connects to.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigurationError

__all__ = ["OPENSSL_HINT", "TLSFiles", "make_certificates"]

OPENSSL_HINT = "apt-get install openssl (Debian/Ubuntu)"


@dataclass(frozen=True)
class TLSFiles:
    """PEM files for serving clients over TLS: the CA that signed every certificate,
    the servers' certificate and key, and a client certificate and key (used by the
    readiness checks and handed to clients in a server's ``url``). With
    ``client_cert_auth`` the server requires clients to present a certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_cert_auth: bool = True

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts :attr:`ca` and presents the client certificate."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context

    def query(self) -> str:
        """The URL query naming these files for a client: ``ca=...&cert=...&key=...``."""
        return f"ca={self.ca}&cert={self.client_cert}&key={self.client_key}"


def make_certificates(directory: str | Path) -> TLSFiles:
    """Make a new CA in ``directory``, and a server and a client certificate it signed
    (EC P-256 keys, unencrypted PKCS#8 PEM; both certificates name ``IP:127.0.0.1`` and
    ``DNS:localhost`` and may serve either role).

    Returns the files; raises :class:`ConfigurationError` when the ``openssl`` command
    is not on PATH or fails."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ConfigurationError(f"the openssl command is not on PATH (needed to make certificates); {OPENSSL_HINT}")

    def run(*args: str) -> None:
        try:
            subprocess.run([openssl, *args], check=True, capture_output=True, cwd=directory, timeout=60)
        except subprocess.CalledProcessError as exc:
            error = exc.stderr.decode(errors="replace").strip()
            raise ConfigurationError(f"openssl {args[0]} failed in {directory}: {error}") from exc

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=fencing-coord test CA")
    for who in ("server", "client"):
        (directory / f"{who}.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
        )
        run("req", *ec, "-keyout", f"{who}.key", "-out", f"{who}.csr", "-subj", f"/CN={who}")
        run("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{who}.pem", "-days", "2", "-extfile", f"{who}.ext")
    return TLSFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                    directory / "client.pem", directory / "client.key")
