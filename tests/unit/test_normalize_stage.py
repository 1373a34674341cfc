"""The profiles lane's normalization (``resolvers.stages.normalize.identifiers``): its path for
the workers' default configuration (built-in types read straight from the model, each value
memoized with its suppression hash) gives what the general path gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers.stages.normalize import identifiers
from schemas.normalize import DEFAULT, NormalizeConfig
from schemas.touchpoint import validate_touchpoint

VALUES = {
    "email": [" Jane.Doe@Example.COM ", "noemail@store.com", "not-an-email", "a@b.co", "   "],
    "phone": ["+47 912 34 567", "912 34 567", "(415) 555-2671", "1234567890", "0000000", "abc"],
    "customer_id": ["  C-0042 ", "unknown", "C-1", "n/a"],
    "loyalty_id": ["LOY123456", "0", "L-100"],
    "card_token": ["tok_AbC123", "tok_1"],
    "anonymous_id": ["anon-1", "a1b2c3d4-0000-4000-8000-000000000001", "null"],
    "social_handle": [" @Jane_Doe ", "@", "instagram_user"],
    "store_card": ["SC-1"],  # a custom type: unknown to the default configuration
}


@settings(max_examples=300, deadline=None)
@given(
    chosen=st.fixed_dictionaries({}, optional={t: st.sampled_from(vs) for t, vs in VALUES.items()}),
    region=st.sampled_from([None, "NO", "US", "GB"]),
    default_region=st.sampled_from([None, "NO", "SE"]),
)
def test_default_path_equals_the_general_one(
    chosen: dict[str, str], region: str | None, default_region: str | None
) -> None:
    event = {
        "event_id": "evt-1",
        "type": "page_view",
        "channel": "web",
        "occurred_at": "2024-05-01T12:00:00Z",
        "identifiers": {"anonymous_id": "anon-0", **chosen},
    }
    if region is not None:
        event["region"] = region
    tp = validate_touchpoint(event)
    general = NormalizeConfig()  # equal to DEFAULT, not it: the general path
    assert general == DEFAULT
    assert general is not DEFAULT
    fast = identifiers(tp, config=DEFAULT, salt=b"s", default_region=default_region)
    slow = identifiers(tp, config=general, salt=b"s", default_region=default_region)
    assert fast == slow
