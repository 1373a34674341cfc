"""Fault injection for chaos tests: imported at start-up by the workers the chaos tier starts
(their ``PYTHONPATH`` has this directory), never by Loom itself.

``LOOM_CHAOS`` (JSON) makes one pipeline stage of the worker's lane fail like a bug would:

* ``{"stage": "observe", "poison": ["e1", ...]}``: the stage raises ``ValueError`` for these
  event ids, every time (poison records);
* ``{"stage": "observe", "first_calls": 3}``: its first 3 calls raise (a bug that goes away);
* ``{"stage": "inventory", "every": true}``: every call raises (a systemic bug).

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


def _install(spec: dict[str, Any]) -> None:
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
