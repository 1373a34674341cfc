"""What ``resolvers.pipeline.run_batch`` relies on to vouch for the batch's identifiers
(``IdentityRules.vouch_unblocked``): an identifier ``normalize_one`` accepts under ``DEFAULT``
is never one ``blocked_by_default`` refuses."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.identifiers import BUILTIN_TYPES, Identifier
from schemas.normalize import (
    BLOCKED_EMAIL_LOCALS,
    BLOCKED_EMAILS,
    BLOCKED_VALUES,
    DEFAULT,
    blocked_by_default,
    normalize_one,
)

#: Values around the blocklists: placeholders in other cases, with spaces, tags, separators,
#: ``@`` prefixes, zeros and dashes, sequences as phone numbers.
_PLACEHOLDERS = sorted(BLOCKED_VALUES | BLOCKED_EMAILS | BLOCKED_EMAIL_LOCALS)
_RAW = st.one_of(
    st.sampled_from(_PLACEHOLDERS),
    st.builds(
        lambda v, pre, post, case: pre + (v.upper() if case else v) + post,
        st.sampled_from(_PLACEHOLDERS),
        st.sampled_from(["", " ", "@", "  @", "\t"]),
        st.sampled_from(["", " ", "@shop.no", "+till3@shop.no", ".x@Example.COM", "\n"]),
        st.booleans(),
    ),
    st.sampled_from(
        ["+47 12345 67890", "+4700000000", "0047 912 34 567", "+1 987-654-3210", "---", "0-0"]
    ),
    st.text(alphabet="0-@.+_ NnOoEeMmAaIiLlUuGgSsTt1", max_size=24),
    st.text(max_size=24),
)


@settings(max_examples=2000, deadline=None)
@given(
    id_type=st.sampled_from(BUILTIN_TYPES),
    raw=_RAW,
    region=st.sampled_from([None, "NO", "US", "SE"]),
)
def test_an_identifier_accepted_under_default_is_not_blocked_by_default(
    id_type: str, raw: str, region: str | None
) -> None:
    result = normalize_one(id_type, raw, region=region, config=DEFAULT)
    if isinstance(result, Identifier):
        assert not blocked_by_default(result.type, result.value)
