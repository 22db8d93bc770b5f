"""The etcd backend's values are written out, not dataclasses (a dataclass costs about a
millisecond to make at import, on the path of a process's first grant: issue 13), and
behave as the dataclasses they replaced: frozen values compare, hash and print by their
fields and refuse assignment; a Lease is mutable and equal only to itself."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from fencing_coord.backends.etcd.heldbook import WatchNews
from fencing_coord.backends.etcd.places import Place
from fencing_coord.backends.etcd.session import DeleteKey, Lease, RevokeLease
from fencing_coord.backends.etcd.wire import KV


def test_the_etcd_backend_and_its_connect_path_load_no_dataclasses() -> None:
    script = ("import json, sys\n"
              "import fencing_coord.backends.etcd\n"
              "from fencing_coord.config import load_backend_class\n"
              "load_backend_class('etcd', 'etcd://x')\n"
              "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    loaded = set(json.loads(out.splitlines()[-1]))
    assert "fencing_coord.backends.etcd.heldkeys" in loaded
    assert "dataclasses" not in loaded


def test_frozen_values_compare_hash_and_print_by_their_fields() -> None:
    lease = Lease(0x2A, 10, 0.0)
    place = Place(b"/q/2a-0", 9, lease, 0, predecessor=b"/q/1f-0", seen=10)
    same = Place(b"/q/2a-0", 9, lease, 0, b"/q/1f-0", 10, False)
    assert place == same
    assert hash(place) == hash(same)
    assert place != Place(b"/q/2a-0", 9, lease, 0, predecessor=b"/q/1f-0", seen=11)
    assert place != Place(b"/q/2a-0", 9, Lease(0x2A, 10, 0.0), 0, predecessor=b"/q/1f-0", seen=10)
    assert (place.first, place.prefix, place.head_before) == (False, b"/q/", False)
    assert Place(b"/q/2a-0", 9, lease, 0).first
    assert repr(KV(b"k", b"v", 3, 4, 5)) == "KV(key=b'k', value=b'v', create_revision=3, mod_revision=4, lease=5)"
    assert KV(b"k", b"v", 3, 4, 5) == KV(b"k", b"v", 3, 4, 5) != KV(b"k", b"v", 3, 4, 6)
    assert RevokeLease(1) == RevokeLease(1) != DeleteKey(b"1")
    assert {RevokeLease(1), RevokeLease(1), DeleteKey(b"k")} == {RevokeLease(1), DeleteKey(b"k")}
    assert WatchNews() == WatchNews((), (), ())
    assert WatchNews().deleted == ()
    for value, field in ((place, "seen"), (KV(b"k", b"v", 3, 4, 5), "lease"), (RevokeLease(1), "id"),
                         (DeleteKey(b"k"), "key"), (WatchNews(), "requests")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, field, 1)


def test_a_lease_is_mutable_and_equal_only_to_itself() -> None:
    lease, twin = Lease(0x2A, 10, 1.5), Lease(0x2A, 10, 1.5)
    assert lease != twin
    assert lease == lease
    assert len({lease, twin}) == 2
    assert (lease.grants, lease.dead, lease.slots, lease.free_slots, lease.next_slot) == (set(), None, set(), [], 0)
    assert lease.grants is not twin.grants
    assert lease.slots is not twin.slots
    assert lease.free_slots is not twin.free_slots
    lease.dead, lease.confirmed_until, lease.next_slot = "expired", 2.5, 3
    assert repr(lease) == ("Lease(id=42, ttl=10, confirmed_until=2.5, grants=set(), dead='expired', slots=set(), "
                           "free_slots=[], next_slot=3)")
