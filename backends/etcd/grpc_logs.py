"""gRPC's own log lines off: imported first by the package, before anything imports grpc.

gRPC's C core writes its log lines straight to stderr, past Python's logging (for
instance ``I1129 ... ssl_transport_security.cc:2563] Handshake failed ...`` at every
reconnection attempt to a server whose certificate is not trusted), and reads their
verbosity, ``GRPC_VERBOSITY``, once: when grpc is imported. Importing this module
imports grpc with that verbosity NONE, then restores the environment (children do not
inherit it). What went wrong reaches the caller as one of our exceptions instead.

A program that chose a verbosity (``GRPC_VERBOSITY=INFO`` to see the lines again), or
imported grpc before this package, keeps gRPC's behaviour.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

__all__ = ["import_grpc_quietly"]

_log = logging.getLogger(__name__)

_VARIABLE = "GRPC_VERBOSITY"


def import_grpc_quietly() -> None:
    """Import grpc with its C core's log lines off, unless the program chose otherwise."""
    if "grpc" in sys.modules or _VARIABLE in os.environ:
        return
    os.environ[_VARIABLE] = "NONE"
    try:
        importlib.import_module("grpc")
    finally:
        os.environ.pop(_VARIABLE, None)


import_grpc_quietly()
