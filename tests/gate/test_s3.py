"""S3Store specifics, against moto's S3 server in its own process: the conditional-write
cycle under a competing writer, a lost reply, services that ignore the conditions, and
errors at the edge. (The gate's contract itself runs on S3 in test_gate.py and co.)"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions
import pytest

from fencing_coord.errors import BackendUnavailable, ConfigurationError, InvalidArgument, InvalidArgumentType
from fencing_coord.gate import FencedResource, WriteResult
from fencing_coord.servers import free_port
from fencing_coord.servers.moto_s3 import MotoS3Server
from fencing_coord.stores.s3 import S3Store
from fencing_coord.stores.s3_state import MAGIC

from .conftest import S3_BUCKET
from .fault_proxy import FaultProxy

pytestmark = pytest.mark.s3

Target = tuple[str, str, str]


def _store(target: Target, endpoint: str | None = None, **options: Any) -> S3Store:
    url, bucket, prefix = target
    return S3Store(bucket, prefix=prefix, endpoint_url=endpoint or url, session=MotoS3Server().session(), **options)


@pytest.fixture
def proxy(moto_s3: MotoS3Server) -> Iterator[FaultProxy]:
    with FaultProxy(moto_s3.port) as made:
        yield made


def test_lost_reply_to_a_put_is_an_unknown_outcome(s3_target: Target, proxy: FaultProxy) -> None:
    """The PUT reaches S3 and lands, but its reply is lost: the store must say it does
    not know, not guess "refused" (nor retry the conditional PUT, which its own landed
    write would refuse)."""
    with _store(s3_target, proxy.endpoint) as store, _store(s3_target) as direct:
        resource = FencedResource(store)
        resource.write("orders", "k", b"from 5", token=5).raise_for_status()
        proxy.drop_reply_to = b"PUT "
        with pytest.raises(BackendUnavailable, match="the write was sent and its outcome is unknown") as caught:
            resource.write("orders", "k", b"from 9", token=9)
        assert caught.value.retryable
        assert isinstance(caught.value.__cause__, botocore.exceptions.ConnectionClosedError)
        assert proxy.replies_dropped == 1
        # It did land: reporting a refusal would have been a lie.
        assert FencedResource(direct).read("orders", "k") == b"from 9"
        assert direct.highest_token("orders") == 9

        proxy.drop_reply_to = None
        # The store's cached ETag is now stale: one 412, a re-read, then the usual rule.
        assert resource.write("orders", "k", b"again 9", token=9) == WriteResult(True, 9)
        assert resource.write("orders", "k", b"late 5", token=5) == WriteResult(False, 9, "stale token 5 < 9")


def test_a_competing_write_between_read_and_put_is_seen(s3_target: Target) -> None:
    """B writes token 8 after A read the (empty) state and before A's conditional PUT:
    A's PUT gets 412, A re-reads and refuses its token 7 instead of overwriting B."""
    with _store(s3_target) as a_store, _store(s3_target) as b_store:
        a, b = FencedResource(a_store), FencedResource(b_store)
        puts: list[str] = []

        def overtake(**_: Any) -> None:
            puts.append("a")
            if len(puts) == 1:
                b.write("orders", "k", b"from 8", token=8).raise_for_status()
                b.write("orders", "other", b"kept", token=8).raise_for_status()

        a_store.client.meta.events.register("before-send.s3.PutObject", overtake)
        assert a.write("orders", "k", b"from 7", token=7) == WriteResult(False, 8, "stale token 7 < 8")
        assert puts == ["a"]  # one conditional PUT, refused by the service; none after the re-read
        assert a.write("orders", "k", b"from 9", token=9) == WriteResult(True, 8)
        assert (a.read("orders", "k"), a.read("orders", "other")) == (b"from 9", b"kept")


def test_a_stale_cache_costs_one_reread(s3_target: Target) -> None:
    with _store(s3_target) as a_store, _store(s3_target) as b_store:
        a, b = FencedResource(a_store), FencedResource(b_store)
        a.write("orders", "k", b"a5", token=5).raise_for_status()
        b.write("orders", "k", b"b6", token=6).raise_for_status()
        assert a.write("orders", "k", b"a5 again", token=5) == WriteResult(False, 6, "stale token 5 < 6")
        assert b.read("orders", "k") == b"b6"


@pytest.mark.parametrize(("stripped", "named"), [("(none-)?match", "If-None-Match: \\*"), ("match", "If-Match")])
def test_a_service_that_ignores_conditions_is_refused(s3_target: Target, proxy: FaultProxy, stripped: str,
                                                      named: str) -> None:
    header = re.compile(rf"(?im)^if-{stripped}:[^\r\n]*\r\n".encode())
    proxy.rewrite = lambda data: header.sub(b"", data)
    with pytest.raises(ConfigurationError, match=f"the service ignored {named} on PutObject"):
        _store(s3_target, proxy.endpoint)


def test_the_state_object_holds_the_token_and_the_values(s3_target: Target) -> None:
    _, bucket, prefix = s3_target
    with _store(s3_target) as store:
        resource = FencedResource(store)
        resource.write("a b%", "k1", b"\x00one", token=3)
        resource.write("a b%", "k2", b"", token=4)
        body = store.client.get_object(Bucket=bucket, Key=prefix + "a%20b%25")["Body"].read()
    assert body.startswith(MAGIC)
    head, values = body[len(MAGIC):].split(b"\n", 1)
    assert json.loads(head) == {"max_token": 4, "values": [["k1", 4], ["k2", 0]]}
    assert values == b"\x00one"


def test_foreign_or_damaged_objects_are_configuration_errors(s3_target: Target) -> None:
    _, bucket, prefix = s3_target
    with _store(s3_target) as store:
        store.client.put_object(Bucket=bucket, Key=prefix + "foreign", Body=b"hello")
        damaged = MAGIC + b'{"max_token": "9", "values": []}\n'
        store.client.put_object(Bucket=bucket, Key=prefix + "damaged", Body=damaged)
        store.client.put_object(Bucket=bucket, Key=prefix + "partial", Body=MAGIC + b'{"max_token": 9}\n')
        resource = FencedResource(store)
        with pytest.raises(ConfigurationError, match=f"s3://{S3_BUCKET}/{prefix}foreign is not a fencing-coord"):
            resource.write("foreign", "k", b"v", token=1)
        with pytest.raises(ConfigurationError, match="damaged fencing-coord state object: wrong field types"):
            resource.highest_token("damaged")
        with pytest.raises(ConfigurationError, match="damaged fencing-coord state object: no field 'values'"):
            resource.read("partial", "k")


def test_missing_bucket_and_unreachable_service(moto_s3: MotoS3Server) -> None:
    secret = boto3.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="s3cr3t-value", region_name="eu")
    with pytest.raises(ConfigurationError, match=r"NoSuchBucket.*retrying will not help") as missing:
        S3Store("no-such-bucket", endpoint_url=moto_s3.endpoint, session=secret)
    with pytest.raises(BackendUnavailable, match="could not check conditional writes") as down:
        S3Store(S3_BUCKET, endpoint_url=f"http://127.0.0.1:{free_port()}", session=secret, timeout=2)
    for caught in (missing, down):
        assert "s3cr3t-value" not in str(caught.value)


def test_constructor_arguments() -> None:
    with pytest.raises(InvalidArgumentType, match="bucket must be a str, not int"):
        S3Store(3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentType, match="prefix must be a str, not NoneType"):
        S3Store("b", prefix=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="timeout must be > 0 seconds"):
        S3Store("b", timeout=0)
    with pytest.raises(InvalidArgument, match="contention_timeout must be > 0 seconds"):
        S3Store("b", contention_timeout=-1)
