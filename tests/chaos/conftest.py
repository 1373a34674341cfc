"""Chaos tier fixtures: the input, the clean reference run, a Redis server and a deployment per
test (``make chaos`` runs them all; ``make test`` the ones not marked ``chaos_full``)."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))  # the e2e harness

from chaos_harness import Chaos, Picture, free_loopback_ports
from local_infra import RedisServer

from schemas.touchpoint import touchpoint_to_json
from streams.simulate import Simulator

#: The good input every chaos test sends (and the reference run processes): simulated traffic
#: of 300 people, 4 stores, 40 SKUs (web and app journeys, store sales, households sharing a
#: tablet, consent choices and withdrawals, erasures, stock counts). Every profile is a
#: function of the set of events (ADR 0005), so a clean run and a run with faults must agree
#: on all of it whatever the redeliveries and batching the faults cause.
EVENTS = 2500


@pytest.fixture(scope="session")
def good_input() -> list[dict[str, Any]]:
    sim = Simulator(seed=11, customers=300, stores=4, skus=40)
    return [touchpoint_to_json(tp) for tp in itertools.islice(sim.events(), EVENTS)]


@pytest.fixture
def chaos(
    kafka_bootstrap: str,
    redis_server: Callable[..., RedisServer],
    tmp_path: Path,
    free_ports: Callable[[int], list[int]],
) -> Iterator[Callable[..., Chaos]]:
    """Factory: ``chaos(appendonly=True)`` -> a :class:`Chaos` deployment on its own Redis."""
    made: list[Chaos] = []

    def make(*, appendonly: bool = True) -> Chaos:
        deployment = Chaos(
            kafka_bootstrap, redis_server(appendonly=appendonly), tmp_path, free_ports
        )
        made.append(deployment)
        return deployment

    yield make
    for deployment in made:
        try:
            deployment.close()
        except Exception:  # the server may be down on purpose
            deployment.stop(deployment.workers)


@pytest.fixture(scope="session")
def reference(
    kafka_bootstrap: str,
    good_input: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Picture]:
    """The clean run: the good input through one worker per lane, no fault."""
    tmp = tmp_path_factory.mktemp("reference")
    (port,) = free_loopback_ports(1)
    server = RedisServer(port, tmp / "redis", appendonly=True)
    server.start()
    deployment = Chaos(kafka_bootstrap, server, tmp, free_loopback_ports)
    try:
        deployment.start_lane("profiles")
        deployment.start_lane("inventory")
        deployment.produce(good_input)
        deployment.wait_idle()
        picture = deployment.picture()
        assert picture.dlq == {}, "the good input has no bad record"
        assert len(picture.seen["profiles"]) == len({e["event_id"] for e in good_input})
        yield picture
    finally:
        deployment.close()
        server.stop()
