"""The identity stage after issue 17's fourteenth pass (``resolvers.stages.identity`` and the
replay, ``resolvers.identity.cluster``) resolves every batch exactly as before: the stage as
it was is kept verbatim in ``identity_stage_reference``, and every batch of generated worlds
(the order-independence property's: shared emails and tablets, late-linked cards, erasures
before and after the events they erase) is resolved by both, delivered in any batches, with
the default rules and with rules under which every shared identifier is quarantined at once
and every limit bites. The resolutions must be equal all the way down: the same people with
the same groups and atoms, the same event groups and outcomes, the same identifier records
(the same ``seen_with`` and holders), the same audit and counts, every mapping in the same
order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta
from typing import Any
from unittest.mock import patch

import identity_stage_reference as reference
from builders import canonical
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline_helpers import make_context
from test_order_independence import CARDS, DEVICES, EMAILS, START, deliver, deliveries, events

from resolvers.decode_cache import DecodeCache
from resolvers.identity.rules import IdentityRules
from resolvers.stages import identity
from resolvers.stages.identity import Evidence, Resolution, Sighting


def strict(rules: IdentityRules) -> IdentityRules:
    """Rules under which an identifier seen with two accounts is shared, and one email, one
    phone and one card per person."""
    limits = {"email": 1, "phone": 1, "card_token": 1}
    return replace(rules, quarantine_threshold=1, limits={**rules.limits, **limits})


@st.composite
def contact_worlds(draw: st.DrawFn) -> list[dict[str, Any]]:
    """The order-independence worlds plus events that carry several identifiers and no
    account id (a newsletter click on a device, a store sale with a receipt email): groups of
    one atom whose best identifier may be shared (the family email, the tablet) while the
    next one still links (added in the sixteenth pass: the first world has no such group)."""
    world = draw(events())
    for n in range(draw(st.integers(1, 12))):
        ids = {"email": draw(st.sampled_from(EMAILS))}
        ids[draw(st.sampled_from(("anonymous_id", "card_token")))] = draw(
            st.sampled_from(DEVICES + CARDS)
        )
        world.append(
            {
                "event_id": f"n{n:03d}",
                "occurred_at": (START + timedelta(minutes=draw(st.integers(0, 600)))).isoformat(),
                "channel": "web",
                "type": "page_view",
                "identifiers": ids,
            }
        )
    return world


def resolve_both(data: st.DataObject, world: list[Any]) -> None:
    """Deliver ``world`` in drawn batches under drawn rules; every batch is resolved by the
    stage and by the reference, and the resolutions compared."""
    values, batches = data.draw(deliveries(world))
    base = make_context()
    rules = data.draw(st.sampled_from([base.rules, strict(base.rules)]), label="rules")
    fast = identity.resolve
    resolved: list[Resolution] = []

    def both(evidence: Evidence, sightings: Iterable[Sighting]) -> Resolution:
        sightings = list(sightings)
        new = fast(evidence, sightings)
        assert canonical(new) == canonical(reference.resolve(evidence, sightings))
        resolved.append(new)
        return new

    with patch.object(identity, "resolve", both):
        deliver(values, batches, lambda: replace(base, rules=rules), cache=DecodeCache())
    assert resolved  # (the batches went through the comparison)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), world=events())
def test_every_batch_is_resolved_as_the_stage_before_the_pass_resolved_it(
    data: st.DataObject, world: list[Any]
) -> None:
    resolve_both(data, world)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), world=contact_worlds())
def test_groups_of_contact_sets_are_resolved_as_before(
    data: st.DataObject, world: list[Any]
) -> None:
    resolve_both(data, world)
