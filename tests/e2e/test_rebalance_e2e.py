"""Rebalances with librdkafka's callbacks busy: real workers, real Kafka and Redis.

confluent-kafka keeps one "call state" per client and thread for its blocking calls; a blocking
call made from inside a rebalance callback (``list_topics``, ``poll``, ``consume``...) clears
it when it returns, and the next callback librdkafka serves in the same outer ``consume`` or
``close`` (a log line, an error, another rebalance) aborts the process (``CallState_get:
Assertion `cs != NULL' failed``). With librdkafka's group debug lines on, every ``consume``
serves log callbacks, so a worker that made such a call in ``on_assign`` died at its first
assignment. Without them it is rarer: the likely cause of one CI run's worker that stopped
answering (CI kept no worker logs) is a ``close`` that served the assignment and then a log
line, inferred from the code, not seen.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest
from e2e_harness import Loom
from test_profiles_e2e import journey

pytestmark = pytest.mark.e2e

#: librdkafka's consumer-group debug lines: callbacks in every consume and close
CHATTY = {"LOOM_KAFKA_CONFIG": orjson.dumps({"debug": "cgrp"}).decode()}


def test_workers_survive_assignments_and_revokes_with_callbacks_in_the_same_consume(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    ports = free_ports(2)
    first = loom.start_worker("profiles", env={**CHATTY, "LOOM_WEB_PORT": str(ports[0])})
    loom.start_worker("inventory", env=CHATTY)
    loom.produce([e for n in ("a", "b") for e in journey(n)])
    loom.wait_idle()  # fails at once on a worker that died
    # a second member: the group rebalances (revoke, then assign) inside both consumers' loops
    second = loom.start_worker("profiles", env={**CHATTY, "LOOM_WEB_PORT": str(ports[1])})
    loom.wait_for(lambda: all(loom.health(p)[0] == 200 for p in ports), "both workers ready")
    loom.produce([e for n in ("c", "d") for e in journey(n)])
    loom.wait_idle()
    assert len(loom.people()) == 4
    loom.stop(second)  # its close revokes what it held; the first is assigned everything
    assert second[0].returncode == 0
    loom.produce(journey("e"))
    loom.wait_idle()
    assert len(loom.people()) == 5
    assert first[0].poll() is None
