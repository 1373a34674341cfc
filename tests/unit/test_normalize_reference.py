"""Issue 17's fourteenth pass against the code before it (``normalize_reference``, verbatim):
the default configuration's inline normalization (``schemas.normalize._default_builtin``)
gives exactly what ``normalize_one`` gave (the same result class, type, value, raw value and
reason), and a phone value's placeholder check without a parse (``_placeholder_phone``) what
``is_blocked`` gave."""

from __future__ import annotations

import normalize_reference
import phonenumbers
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
    _may_rewrite,
    is_blocked,
    normalize_one,
)

#: Pieces a raw identifier is made of: placeholders, separators, case and Unicode that folds,
#: whitespace Python strips (``\x1c``, NBSP, U+3000), characters an e-mail must not hold.
_PIECES = st.sampled_from(
    [
        *sorted(BLOCKED_VALUES),
        *sorted(BLOCKED_EMAILS),
        *sorted(BLOCKED_EMAIL_LOCALS),
        "@",
        "@@",
        ".",
        "-",
        "0",
        "00-0",
        "_",
        "+",
        "a",
        "Z",
        "jane.doe",
        "example.com",
        "EXAMPLE.COM",
        "xn--sm-xia.no",
        "ß",
        "ẞ",
        "İ",
        "ﬀ",
        "K",
        " ",
        "\t",
        "\n",
        "\x1c",
        "\xa0",
        "\u3000",
        "\u200b",
        "tok_",
        "C-",
        "(",
        ";",
        "é",
        "😀",
    ]
)
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
@example(id_type="email", raw="No.Reply+till3@Shop.no", region=None)  # a placeholder
@example(id_type="email", raw="JOSE\u0301@example.no", region=None)  # NFC
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


# --- a phone value's placeholder check without a parse (``_placeholder_phone``) -------------

_RUNS = ["01234", "12345", "23456789", "567890", "98765", "43210", "3210987", "00000", "7777777"]
_CODES = sorted(str(cc) for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
_DIGITS = st.text(alphabet="0123456789", max_size=16)
_PHONE_VALUES = st.one_of(
    _DIGITS.map(lambda d: "+" + d),
    st.builds(  # a country code (transform rules included: 54, 55, 81, 261 ...), then a run
        lambda cc, head, run, tail: f"+{cc}{head}{run}{tail}",
        st.sampled_from(_CODES),
        st.text(alphabet="0123456789", max_size=4),
        st.sampled_from(_RUNS),
        st.text(alphabet="0123456789", max_size=2),
    ),
    st.builds(  # not canonical: Unicode digits, separators, a missing plus: the parse decides
        lambda d, sep, plus: plus + sep.join(d),
        st.lists(
            st.sampled_from([*"0123456789", "\u0664", "\u0665", "\uff11", "\u00b2"]), max_size=14
        ),
        st.sampled_from(["", " ", "-"]),
        st.sampled_from(["+", "", "00", "\uff0b"]),
    ),
    st.text(max_size=12),
)


@settings(max_examples=3_000, deadline=None)
@given(value=_PHONE_VALUES)
@example(value="+4712345678")  # a run after the country code: blocked
@example(value="+4791234567")
@example(value="+\u0664\u0667\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668")  # Arabic-Indic
@example(value="+54 9 11 1234 5678")
def test_a_phone_value_is_blocked_as_before(value: str) -> None:
    assert is_blocked("phone", value) == normalize_reference.is_blocked("phone", value)


def _example_numbers() -> list[str]:
    """Every region's example numbers of every type, in E.164, and each with its last digits
    replaced by a run (a placeholder a parse may or may not find)."""
    out = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in phonenumbers.PhoneNumberType.values():
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                out += [e164, e164[:-5] + "12345", e164[:-6] + "000000", e164[:-5] + "98765"]
    return out


def test_every_regions_example_numbers_are_blocked_as_before() -> None:
    values = _example_numbers()
    assert len(values) > 2_000
    for value in values:
        assert is_blocked("phone", value) == normalize_reference.is_blocked("phone", value), value


def test_the_country_codes_whose_parse_may_rewrite_digits() -> None:
    """The installed metadata's main regions with a national-prefix transform rule: there
    the parse decides (checked, not assumed: a ``phonenumbers`` upgrade shows here)."""
    rewriting = {cc for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE if _may_rewrite(cc)}
    assert rewriting == {54, 55, 81, 241, 261, 378, 672}
    assert not _may_rewrite(47)
    assert not _may_rewrite(999)  # not a country code
