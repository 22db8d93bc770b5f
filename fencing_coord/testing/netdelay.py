"""Add latency to packets in user space: a netfilter queue (NFQUEUE) reader that accepts
each queued packet only after a delay.

    python -m fencing_coord.testing.netdelay --queue 0 --delay-ms 80 --jitter-ms 20

It binds queue ``--queue`` of the network namespace it runs in (the network lab starts
it with ``ip netns exec``), prints ``ready`` once bound, and from then on gives each
packet that an ``iptables ... -j NFQUEUE`` rule sends it the verdict ACCEPT
``delay ± jitter`` milliseconds after it arrived (uniformly drawn; with jitter, packets
may leave out of order, as on a real path). On SIGTERM or SIGINT it accepts whatever it
still holds at once and exits 0.

Why not ``tc qdisc ... netem``: kernels built without ``CONFIG_NET_SCH_NETEM`` (this
project's CI machines among them) have no netem; NFQUEUE is in every common kernel.

The protocol is nfnetlink_queue's (``linux/netfilter/nfnetlink_queue.h``), spoken over a
raw ``NETLINK_NETFILTER`` socket, with metadata-only copies (no payload is read).
"""

from __future__ import annotations

import argparse
import errno
import heapq
import random
import signal
import socket
import struct
import sys
import threading
import time
from types import FrameType

__all__ = ["Delayer", "main"]

_NETLINK_NETFILTER = 12
_NFNL_SUBSYS_QUEUE = 3
_MSG_PACKET = (_NFNL_SUBSYS_QUEUE << 8) | 0
_MSG_VERDICT = (_NFNL_SUBSYS_QUEUE << 8) | 1
_MSG_CONFIG = (_NFNL_SUBSYS_QUEUE << 8) | 2
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 1
_NLM_F_ACK = 4
_CFG_CMD, _CFG_PARAMS, _CFG_QUEUE_MAXLEN, _CFG_MASK, _CFG_FLAGS = 1, 2, 3, 4, 5
_CMD_BIND = 1
_COPY_META = 1
_F_FAIL_OPEN = 1  # a full queue lets packets through instead of dropping them
_PACKET_HDR = 1
_VERDICT_HDR = 2
_NF_ACCEPT = 1
_MAX_QUEUED = 8192


def _attr(kind: int, data: bytes) -> bytes:
    body = struct.pack("=HH", 4 + len(data), kind) + data
    return body + b"\0" * (-len(body) % 4)


def _message(kind: int, flags: int, seq: int, queue: int, attrs: bytes) -> bytes:
    payload = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack(">H", queue) + attrs
    return struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload


def _packet_ids(data: bytes, errors: list[int] | None = None) -> list[int]:
    """The packet ids of the NFQNL_MSG_PACKET messages in one netlink datagram. A
    netlink error message raises OSError, or is appended to ``errors`` if given."""
    ids = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        if kind == _NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, offset + 16)
            if code != 0 and errors is not None:
                errors.append(-code)
            elif code != 0:
                raise OSError(-code, f"nfnetlink_queue refused a request: error {-code}")
        elif kind == _MSG_PACKET:
            pos, end = offset + 20, offset + length
            while pos + 4 <= end:
                alen, atype = struct.unpack_from("=HH", data, pos)
                if alen < 4:
                    break
                if atype & 0x7FFF == _PACKET_HDR:
                    ids.append(struct.unpack_from(">I", data, pos + 4)[0])
                pos += (alen + 3) & ~3
        offset += (length + 3) & ~3
    return ids


class Delayer:
    """One bound netfilter queue whose packets are accepted ``delay ± jitter`` s late."""

    def __init__(self, queue: int, delay: float, jitter: float = 0.0, seed: int | None = None) -> None:
        self.queue = queue
        self.delay = delay
        self.jitter = jitter
        self._random = random.Random(seed)
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self._sock.bind((0, 0))
        self._pending: list[tuple[float, int]] = []
        self._ready = threading.Condition()
        self._stopping = False
        self._send_lock = threading.Lock()
        #: Verdicts the kernel refused (packets it no longer held).
        self.refused_verdicts = 0
        self._configure()

    def _configure(self) -> None:
        requests = [
            _attr(_CFG_CMD, struct.pack("=BxH", _CMD_BIND, 0)),
            _attr(_CFG_PARAMS, struct.pack(">IB", 0, _COPY_META)),
            _attr(_CFG_QUEUE_MAXLEN, struct.pack(">I", _MAX_QUEUED)),
            _attr(_CFG_FLAGS, struct.pack(">I", _F_FAIL_OPEN)) + _attr(_CFG_MASK, struct.pack(">I", _F_FAIL_OPEN)),
        ]
        for seq, attrs in enumerate(requests, start=1):
            self._sock.send(_message(_MSG_CONFIG, _NLM_F_REQUEST | _NLM_F_ACK, seq, self.queue, attrs))
            _packet_ids(self._sock.recv(65536))  # the ack, or OSError

    def serve(self) -> None:
        """Receive packets until :meth:`stop`; a thread gives the verdicts."""
        releaser = threading.Thread(target=self._release, name="netdelay-release", daemon=True)
        releaser.start()
        self._sock.settimeout(0.2)
        while not self._stopping:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stopping:
                    break
                if exc.errno == errno.ENOBUFS:  # we fell behind: the kernel let those packets through
                    continue
                raise
            now = time.monotonic()
            # A verdict the kernel refuses (ENOENT: it no longer holds that packet, e.g.
            # it dropped it with a replaced ruleset) changes nothing for the others.
            refused: list[int] = []
            ids = _packet_ids(data, refused)
            self.refused_verdicts += len(refused)
            with self._ready:
                for packet_id in ids:
                    late = self.delay + self._random.uniform(-self.jitter, self.jitter)
                    heapq.heappush(self._pending, (now + max(0.0, late), packet_id))
                self._ready.notify()
        releaser.join()

    def stop(self) -> None:
        """Accept every packet still held, now, and end :meth:`serve`."""
        with self._ready:
            self._stopping = True
            self._ready.notify()

    def _release(self) -> None:
        while True:
            with self._ready:
                while True:
                    if self._stopping:
                        due = [packet_id for _, packet_id in self._pending]
                        self._pending.clear()
                        break
                    if self._pending and self._pending[0][0] <= time.monotonic():
                        due = []
                        now = time.monotonic()
                        while self._pending and self._pending[0][0] <= now:
                            due.append(heapq.heappop(self._pending)[1])
                        break
                    wait = self._pending[0][0] - time.monotonic() if self._pending else None
                    self._ready.wait(wait)
                stopping = self._stopping
            for packet_id in due:
                self._accept(packet_id)
            if stopping:
                return

    def _accept(self, packet_id: int) -> None:
        verdict = _attr(_VERDICT_HDR, struct.pack(">II", _NF_ACCEPT, packet_id))
        with self._send_lock:
            self._sock.send(_message(_MSG_VERDICT, _NLM_F_REQUEST, 0, self.queue, verdict))

    def close(self) -> None:
        self._sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fencing_coord.testing.netdelay",
                                     description="Add latency to the packets of a netfilter queue.")
    parser.add_argument("--queue", type=int, default=0, help="netfilter queue number (default 0)")
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if args.delay_ms < 0 or args.jitter_ms < 0:
        parser.error("--delay-ms and --jitter-ms must be >= 0")
    try:
        delayer = Delayer(args.queue, args.delay_ms / 1000, args.jitter_ms / 1000, args.seed)
    except OSError as exc:
        print(f"netdelay: cannot bind netfilter queue {args.queue}: {exc}", file=sys.stderr)
        return 1

    def on_signal(signum: int, frame: FrameType | None) -> None:
        delayer.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("ready", flush=True)
    try:
        delayer.serve()
    finally:
        delayer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
