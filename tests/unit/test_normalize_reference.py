"""The default configuration's inline normalization (``schemas.normalize._default_builtin``,
issue 17's fourteenth pass) gives exactly what ``normalize_one`` gave before it
(``normalize_reference``): the same result class, type, value, raw value and reason."""

from __future__ import annotations

import normalize_reference
from hypothesis import example, given, settings
from hypothesis import strategies as st

from schemas.identifiers import BUILTIN_TYPES, Identifier
from schemas.normalize import (
    BLOCKED_EMAIL_LOCALS,
    BLOCKED_EMAILS,
    BLOCKED_VALUES,
    DEFAULT,
    NormalizeConfig,
    Rejected,
    normalize_one,
)

#: Pieces a raw identifier is made of: placeholders, separators, case and Unicode that folds,
#: whitespace Python strips (``\x1c``, NBSP, U+3000), characters an e-mail must not hold.
_PIECES = st.sampled_from(
    [
        *sorted(BLOCKED_VALUES),
        *sorted(BLOCKED_EMAILS),
        *sorted(BLOCKED_EMAIL_LOCALS),
        "@", "@@", ".", "-", "0", "00-0", "_", "+", "a", "Z", "jane.doe", "example.com",
        "EXAMPLE.COM", "xn--sm-xia.no", "ß", "ẞ", "İ", "ﬀ", "K", " ", "\t", "\n", "\x1c",
        "\xa0", "\u3000", "\u200b", "tok_", "C-", "(", ";", "é", "😀",
    ]
)  # fmt: skip
_RAW = st.one_of(
    st.text(max_size=30),
    st.lists(_PIECES, max_size=6).map("".join),
    st.builds(
        lambda n, c, pad: pad + c * n + pad,
        st.integers(250, 260),
        st.sampled_from("a@"),
        st.sampled_from(["", " "]),
    ),
)
_TYPES = st.sampled_from([*BUILTIN_TYPES, "member_no"])


def _same(new: Identifier | Rejected, old: Identifier | Rejected) -> None:
    assert type(new) is type(old)
    assert new == old
    if isinstance(new, Identifier) and isinstance(old, Identifier):
        assert (new.type, new.value, new.raw) == (old.type, old.value, old.raw)


@settings(max_examples=3_000, deadline=None)
@given(id_type=_TYPES, raw=_RAW, region=st.sampled_from([None, "NO", "US"]))
@example(id_type="email", raw=" Jane.Doe@Example.COM ", region=None)
@example(id_type="email", raw="NoEmail@store.com", region=None)
@example(id_type="email", raw="Straße@Example.com", region=None)  # lower, not casefold
@example(id_type="social_handle", raw=" @ ", region=None)
@example(id_type="social_handle", raw="@NULL", region=None)
@example(id_type="card_token", raw=" 0000 ", region=None)
@example(id_type="anonymous_id", raw="-1", region=None)
@example(id_type="customer_id", raw="a" * 257, region=None)
@example(id_type="email", raw="a" * 250 + "@b.no", region=None)
def test_default_configuration_is_the_reference(id_type: str, raw: str, region: str | None) -> None:
    _same(
        normalize_one(id_type, raw, region=region),
        normalize_reference.normalize_one(id_type, raw, region=region),
    )


_OTHER = NormalizeConfig(gmail_normalization=True, blocked_patterns={"*": ("x+",)})


@settings(max_examples=300, deadline=None)
@given(id_type=_TYPES, raw=_RAW)
def test_another_configuration_takes_the_general_path(id_type: str, raw: str) -> None:
    for config in (_OTHER, NormalizeConfig()):  # an equal config is not ``DEFAULT``: same answer
        _same(
            normalize_one(id_type, raw, region=None, config=config),
            normalize_reference.normalize_one(id_type, raw, region=None, config=config),
        )
    assert NormalizeConfig() == DEFAULT
