"""Fault injection for chaos tests: imported at start-up by the workers the chaos tier starts
(their ``PYTHONPATH`` has this directory), never by Loom itself.

``LOOM_CHAOS`` (JSON) makes one pipeline stage of the worker's lane fail like a bug would:

* ``{"stage": "resolve", "poison": ["e1", ...]}``: the stage raises ``ValueError`` for these
  event ids, every time (poison records);
* ``{"stage": "resolve", "first_calls": 3}``: its first 3 calls raise (a bug that goes away);
* ``{"stage": "inventory", "every": true}``: every call raises (a systemic bug).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import orjson


def _install(spec: dict[str, Any]) -> None:
    module = importlib.import_module(f"resolvers.stages.{spec['stage']}")
    real = module.run
    poison = frozenset(spec.get("poison", ()))
    budget = {"first_calls": int(spec.get("first_calls", 0))}
    every = bool(spec.get("every", False))

    def run(event: Any, state: Any) -> Any:
        if every or event.tp.event_id in poison:
            raise ValueError(f"chaos: {spec['stage']} fails on this event")
        if budget["first_calls"] > 0:
            budget["first_calls"] -= 1
            raise ValueError(f"chaos: {spec['stage']} fails, for now")
        return real(event, state)

    module.run = run


if os.environ.get("LOOM_CHAOS"):
    _install(orjson.loads(os.environ["LOOM_CHAOS"]))
