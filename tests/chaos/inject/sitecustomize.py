"""Fault injection for chaos tests: imported at start-up by the workers the chaos tier starts
(their ``PYTHONPATH`` has this directory), never by Loom itself.

``LOOM_CHAOS`` (JSON) makes one pipeline stage of the worker's lane fail like a bug would:

* ``{"stage": "observe", "poison": ["e1", ...]}``: the stage raises ``ValueError`` for these
  event ids, every time (poison records);
* ``{"stage": "observe", "first_calls": 3}``: its first 3 calls raise (a bug that goes away);
* ``{"stage": "inventory", "every": true}``: every call raises (a systemic bug);
* ``{"stage": "revoke", "freeze_broker": PID}``: the broker's process is frozen (``SIGSTOP``)
  as the worker's first rebalance callback that takes partitions away starts (the test thaws
  it).

The stages are the per-event functions of each lane: ``observe`` (the profiles lane's
``resolvers.stages.observe.observation``, every event that reaches a profile) and
``inventory`` (the inventory lane's ``resolvers.stages.inventory.movements``). A stage this
file does not know fails the worker's start-up instead of silently injecting nothing.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import orjson

#: stage -> (module, the per-event function taking the touchpoint first)
STAGES = {
    "observe": ("resolvers.stages.observe", "observation"),
    "inventory": ("resolvers.stages.inventory", "movements"),
}


def _freeze_on_revoke(pid: int) -> None:
    """The broker (process ``pid``) frozen (``SIGSTOP``) as the lane's first rebalance callback
    that takes partitions away starts: its offsets commit, made in the callback, meets a broker
    that does not answer. The test thaws it."""
    import signal

    from streams import lane_runner

    real = lane_runner.LaneRunner._on_revoke
    done: list[bool] = []

    def on_revoke(self: Any, consumer: Any, partitions: Any) -> None:
        if partitions and not done:
            done.append(True)
            os.kill(pid, signal.SIGSTOP)
        real(self, consumer, partitions)

    lane_runner.LaneRunner._on_revoke = on_revoke  # type: ignore[method-assign]


def _install(spec: dict[str, Any]) -> None:
    if spec.get("stage") == "revoke":
        _freeze_on_revoke(int(spec["freeze_broker"]))
        return
    module_name, function = STAGES[spec["stage"]]
    module = importlib.import_module(module_name)
    real = getattr(module, function)
    poison = frozenset(spec.get("poison", ()))
    budget = {"first_calls": int(spec.get("first_calls", 0))}
    every = bool(spec.get("every", False))

    def run(tp: Any, *args: Any, **kwargs: Any) -> Any:
        if every or tp.event_id in poison:
            raise ValueError(f"chaos: {spec['stage']} fails on this event")
        if budget["first_calls"] > 0:
            budget["first_calls"] -= 1
            raise ValueError(f"chaos: {spec['stage']} fails, for now")
        return real(tp, *args, **kwargs)

    setattr(module, function, run)


if os.environ.get("LOOM_CHAOS"):
    try:
        _install(orjson.loads(os.environ["LOOM_CHAOS"]))
    except Exception as exc:  # Python only prints sitecustomize errors: make it fatal
        raise SystemExit(f"LOOM_CHAOS: cannot install the fault: {exc!r}") from exc
