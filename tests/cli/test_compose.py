"""``compose/compose.yaml``: a 3-member etcd cluster and a 3-node ZooKeeper ensemble for
users with Docker. No engine runs here, so the file is checked as data: the services,
their cluster wiring, published ports and healthchecks, and that the URLs the READMEs
tell users to connect to are the ports the file publishes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from fencing_coord import parse_url

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose" / "compose.yaml"
HEADING = "## Running real clusters with Docker"
URL = re.compile(r"\b(?:etcd|zookeeper)://[0-9A-Za-z.:,\[\]-]+")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    result: dict[str, Any] = data["services"]
    return result


def etcd_services(services: dict[str, Any]) -> dict[str, Any]:
    return {name: s for name, s in services.items() if "etcd" in s["image"]}


def zookeeper_services(services: dict[str, Any]) -> dict[str, Any]:
    return {name: s for name, s in services.items() if s["image"].startswith("zookeeper:")}


def published(service: dict[str, Any]) -> tuple[str, int, int]:
    """(host address, host port, container port) of the service's one published port."""
    (spec,) = service["ports"]
    address, host_port, container_port = str(spec).split(":")
    return address, int(host_port), int(container_port)


def expected_urls(services: dict[str, Any]) -> dict[str, str]:
    def url(scheme: str, group: dict[str, Any]) -> str:
        return f"{scheme}://" + ",".join(f"127.0.0.1:{published(s)[1]}" for _, s in sorted(group.items()))

    return {"etcd": url("etcd", etcd_services(services)), "zookeeper": url("zookeeper", zookeeper_services(services))}


def section(markdown: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    start = markdown.find(heading + "\n")
    assert start >= 0, f"no {heading!r} section (the README section is kept in compose/README.md)"
    rest = markdown[start + len(heading):]
    end = re.search(r"^#{1,2} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def test_three_etcd_members_form_one_cluster(services: dict[str, Any]) -> None:
    etcd = etcd_services(services)
    assert sorted(etcd) == ["etcd1", "etcd2", "etcd3"]
    initial = dict(item.split("=", 1) for item in etcd["etcd1"]["environment"]["ETCD_INITIAL_CLUSTER"].split(","))
    assert set(initial) == set(etcd)
    for name, service in etcd.items():
        env = service["environment"]
        assert env["ETCD_NAME"] == name
        assert env["ETCD_INITIAL_CLUSTER"] == etcd["etcd1"]["environment"]["ETCD_INITIAL_CLUSTER"]
        assert env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == initial[name]
        assert env["ETCD_INITIAL_CLUSTER_STATE"] == "new"


def test_etcd_ports_are_published_and_advertised(services: dict[str, Any]) -> None:
    for name, service in etcd_services(services).items():
        address, host_port, container_port = published(service)
        env = service["environment"]
        assert address == "127.0.0.1", name
        assert env["ETCD_LISTEN_CLIENT_URLS"] == f"http://0.0.0.0:{container_port}", name
        # What clients discover through the member list must be reachable from the host.
        assert env["ETCD_ADVERTISE_CLIENT_URLS"] == f"http://127.0.0.1:{host_port}", name


def test_three_zookeeper_nodes_form_one_ensemble(services: dict[str, Any]) -> None:
    zk = zookeeper_services(services)
    assert sorted(zk) == ["zoo1", "zoo2", "zoo3"]
    ids = sorted(int(s["environment"]["ZOO_MY_ID"]) for s in zk.values())
    assert ids == [1, 2, 3]
    for name, service in zk.items():
        env = service["environment"]
        servers = env["ZOO_SERVERS"].split()
        assert servers == [f"server.{i}=zoo{i}:2888:3888;2181" for i in (1, 2, 3)], name
        assert service["hostname"] == name
        address, _, container_port = published(service)
        assert (address, container_port) == ("127.0.0.1", 2181), name
        # Sessions may last 2..20 ticks; the library's default ttl=10 s must fit.
        assert 2 * int(env["ZOO_TICK_TIME"]) <= 10_000 <= 20 * int(env["ZOO_TICK_TIME"])


def test_host_ports_are_distinct(services: dict[str, Any]) -> None:
    ports = [published(s)[1] for s in services.values()]
    assert len(ports) == len(set(ports)) == 6


def test_every_service_has_a_healthcheck_that_asks_the_server(services: dict[str, Any]) -> None:
    for name, service in etcd_services(services).items():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", name
        assert test[-2:] == ["endpoint", "health"], name
        assert f"--endpoints=http://127.0.0.1:{published(service)[2]}" in test, name
    for name, service in zookeeper_services(services).items():
        assert service["healthcheck"]["test"] == ["CMD", "zkServer.sh", "status"], name
    for name, service in services.items():
        check = service["healthcheck"]
        assert {"interval", "timeout", "retries"} <= set(check), name


@pytest.mark.parametrize("readme", ["README.md", "compose/README.md"])
def test_the_readme_urls_are_the_published_ports(services: dict[str, Any], readme: str) -> None:
    text = section((ROOT / readme).read_text(), HEADING)
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert blocks, f"{readme}: no fenced code block under {HEADING!r}"
    found = set(URL.findall("\n".join(blocks)))
    expected = expected_urls(services)
    assert found == set(expected.values()), f"{readme}: code block URLs {found} != compose's {expected}"
    for url in URL.findall(text):  # the table and prose too
        assert url in expected.values(), f"{readme}: {url} does not match {COMPOSE.name}"
        parse_url(url)


def test_the_compose_file_comments_name_the_same_urls(services: dict[str, Any]) -> None:
    found = set(URL.findall(COMPOSE.read_text()))
    assert found == set(expected_urls(services).values())
