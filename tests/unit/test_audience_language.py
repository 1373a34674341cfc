"""The audience expression language: parsing, type errors with columns, evaluation, the file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolvers.audiences import (
    AudienceFileError,
    Env,
    ExpressionError,
    compile_expression,
    from_mapping,
    load_audiences,
)
from resolvers.audiences.language import BoolOp, Compare, Field, Literal, Not, parse
from streams.runtime import configured_audiences
from streams.settings import ConfigError, LoomSettings

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

SHOE_BUYER: dict[str, Any] = {
    "orders_online": 2,
    "orders_in_store": 1,
    "shopping_mode": "omnichannel",
    "region": "NO",
    "channels": ["pos", "web"],
    "lifetime_value": {"NOK": "1500.00"},
    "last_order": {"at": "2026-06-01T10:00:00Z"},
    "category_purchases": {
        "running": {
            "orders": 2,
            "spend": {"NOK": "1400.00"},
            "first_purchase": "2025-12-01T10:00:00Z",
            "last_purchase": "2026-06-01T10:00:00Z",
            "repurchase_interval_days": 182.0,
        },
        "socks": {
            "orders": 1,
            "spend": {"NOK": "100.00"},
            "first_purchase": "2026-06-01T10:00:00Z",
            "last_purchase": "2026-06-01T10:00:00Z",
            "repurchase_interval_days": None,
        },
    },
    "preferences": {"size": "M", "sports": ["running", "yoga"], "newsletter": True},
    "traits": {"first_name": "Ann"},
    "consent": {"marketing": {"granted": True}, "ads": {"granted": False}},
    "reachable": {"email": True, "phone": False},
}


def matches(text: str, doc: dict[str, Any] = SHOE_BUYER, **env: Any) -> bool:
    return compile_expression(text).matches(Env(doc, env.pop("now", NOW), **env))


# --------------------------------------------------------------------------- parsing


def test_precedence_not_binds_tighter_than_and_tighter_than_or() -> None:
    tree = parse("not a == 1 and b == 2 or c == 3")
    assert isinstance(tree, BoolOp)
    assert tree.op == "or"
    left = tree.operands[0]
    assert isinstance(left, BoolOp)
    assert left.op == "and"
    assert isinstance(left.operands[0], Not)


def test_between_takes_its_own_and() -> None:
    tree = parse("x between 1 and 2 and y == 3")
    assert isinstance(tree, BoolOp)
    assert len(tree.operands) == 2


def test_literals_and_quoted_path_segments() -> None:
    tree = parse('category_orders."trail running" >= 2026-01-05')
    assert isinstance(tree, Compare)
    assert tree.left == Field(("category_orders", "trail running"), 1)
    assert tree.right == Literal(datetime(2026, 1, 5, tzinfo=UTC), 36)
    assert parse('"a \\"q\\""') == Literal('a "q"', 1)
    assert parse("-2.5") == Literal(-2.5, 1)


def test_keywords_are_case_insensitive() -> None:
    assert matches("orders >= 3 AND NOT consent.ads Or orders == 0")


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("", 1, "empty expression"),
        ("orders >", 9, "found the end"),
        ("orders >= 1 and", 16, "found the end"),
        ("(orders >= 1", 13, "expected ')'"),
        ('traits.city == "Oslo', 16, "unterminated string"),
        ("orders ; 1", 8, "unexpected character ';'"),
        ("orders >= 1 orders", 13, "unexpected 'orders'"),
        ("x in [1, y]", 10, "expected a literal"),
        ("orders between 1 or 2", 18, "expected 'and'"),
        ("last_seen > 2026-02-30", 13, "not a date"),
    ],
)
def test_syntax_errors_name_the_column(text: str, column: int, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text)
    assert info.value.column == column
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"column {column}: ")


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("nope > 1", 1, "unknown field 'nope'"),
        ("category_orders > 1", 1, "must look like category_orders.<1>"),
        ("category_spend.running > 1", 1, "category_spend.<1>.<2>"),
        ("consent.email", 1, "consent is one of ads, analytics, marketing, personalization"),
        ('orders > "3"', 8, "cannot compare a number with a string"),
        ("last_seen > 3", 11, "cannot compare a date with a number"),
        ("consent.ads < true", 13, "'<' needs numbers, dates or strings"),
        ("orders", 1, "the expression is a number, not a condition"),
        ("orders and consent.ads", 1, "'and' needs a condition, got a number"),
        ("not region", 5, "'not' needs a condition, got a string"),
        ("orders between 1 and 2026-01-01", 8, "'between' needs bounds"),
        ('region in ["NO", 1]', 18, "a number in a list for a string"),
        ('region contains "N"', 8, "'contains' needs a list, got a string"),
        ("channels == 1", 10, "cannot compare a list with a number"),
    ],
)
def test_type_errors_name_the_column(text: str, column: int, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text)
    assert (info.value.column, fragment in info.value.message) == (column, True), info.value


# --------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("orders == 3", True),
        ("orders_online > 2", False),
        ("lifetime_value.NOK >= 1500", True),
        ("lifetime_value.EUR == 0", True),  # sums read 0 where there is nothing
        ("category_orders.running >= 2 and category_orders.golf == 0", True),
        ("category_spend.running.NOK between 1000 and 2000", True),
        ("first_purchase.running < 2026-01-01", True),
        ('shopping_mode in ["online", "omnichannel"]', True),
        ('region not in ["NO", "SE"]', False),
        ('channels contains "pos"', True),
        ('preferences.sports contains "yoga"', True),
        ('preferences.size == "M"', True),
        ("preferences.newsletter == true", True),
        ("preferences.newsletter in [true]", True),
        ("preferences.newsletter in [1]", False),  # true is not 1, as with ==
        ('traits.first_name != "Bob"', True),
        ("consent.marketing and not consent.ads and reachable.email", True),
        ("consent.analytics", False),  # never stated: not granted
    ],
)
def test_evaluation(text: str, expected: bool) -> None:
    assert matches(text) is expected


def test_time_dependent_fields_use_the_injected_clock() -> None:
    text = "days_since_last_purchase.running between 150 and 200"
    assert compile_expression(text).time_dependent
    assert not compile_expression("category_orders.running >= 1").time_dependent
    assert not matches(text, now=datetime(2026, 10, 28, 9, 59, tzinfo=UTC))  # 148 days
    assert matches(text, now=datetime(2026, 10, 29, 10, 0, tzinfo=UTC))  # 150 days exactly
    assert matches(text, now=datetime(2026, 12, 18, 10, 0, tzinfo=UTC))  # 200
    assert not matches(text, now=datetime(2026, 12, 19, 10, 0, tzinfo=UTC))  # 201


def test_the_predicted_purchase_uses_the_own_interval_else_the_category_median() -> None:
    assert matches("repurchase_interval_days.running == 182")
    # June 1 10:00 + 182 days (a DATE literal is midnight UTC: dates are instants)
    assert matches("predicted_next_purchase.running between 2026-11-30 and 2026-12-01")
    assert matches("days_until_next_purchase.running == 7")  # 7 days ahead of NOW (floor)
    # one purchase of socks: no own interval; the category-wide median fills in
    assert not matches("repurchase_interval_days.socks > 0")
    assert matches("repurchase_interval_days.socks == 30", medians={"socks": 30.0})
    overdue = "days_until_next_purchase.socks < 0"
    assert matches(overdue, medians={"socks": 30.0})
    assert not matches(overdue)  # unknown without a median


def test_unknown_values_follow_three_valued_logic() -> None:
    nobody: dict[str, Any] = {}
    # a person who never bought is in neither the condition nor its negation
    assert not matches("days_since_last_purchase.running < 30", nobody)
    assert not matches("not days_since_last_purchase.running < 30", nobody)
    assert matches("days_since_last_purchase.running < 30 or orders == 0", nobody)
    assert not matches("days_since_last_purchase.running < 30 and orders == 0", nobody)
    assert not matches('preferences.size == "M" or preferences.size != "M"', nobody)
    assert not matches("preferences.size == 3 or preferences.size != 3")  # a string: unknown


@given(a=st.sampled_from([True, False, None]), b=st.sampled_from([True, False, None]))
def test_and_or_not_are_kleene(a: bool | None, b: bool | None) -> None:
    def lit(v: bool | None) -> str:
        return {True: "orders == 3", False: "orders == 4", None: "preferences.x == 1"}[v]

    def kleene_and(x: bool | None, y: bool | None) -> bool | None:
        if x is False or y is False:
            return False
        return None if None in (x, y) else True

    def kleene_or(x: bool | None, y: bool | None) -> bool | None:
        if x is True or y is True:
            return True
        return None if None in (x, y) else False

    env = Env(SHOE_BUYER, NOW)
    assert compile_expression(f"{lit(a)} and {lit(b)}").fn(env) is kleene_and(a, b)
    assert compile_expression(f"{lit(a)} or {lit(b)}").fn(env) is kleene_or(a, b)
    assert compile_expression(f"not {lit(a)}").fn(env) is (None if a is None else not a)


def test_fields_read_lists_what_the_expression_reads() -> None:
    expr = compile_expression("category_orders.running >= 1 and consent.marketing")
    assert expr.fields == {"category_orders.running", "consent.marketing"}


# --------------------------------------------------------------------------- the file


def test_a_marketing_audience_needs_marketing_granted_now(tmp_path: Path) -> None:
    path = tmp_path / "audiences.toml"
    path.write_text(
        "[audiences.runners]\n"
        'description = "bought running shoes"\n'
        'expression = "category_orders.running >= 1"\n'
        "marketing = true\n"
        "[audiences.all-runners]\n"
        'expression = "category_orders.running >= 1"\n'
    )
    audiences = load_audiences(path)
    assert [a.name for a in audiences] == ["all-runners", "runners"]
    assert audiences.by_name["runners"].description == "bought running shoes"
    assert audiences.members(SHOE_BUYER, NOW) == {"all-runners", "runners"}
    withdrawn = SHOE_BUYER | {"consent": {"marketing": {"granted": False}}}
    assert audiences.members(withdrawn, NOW) == {"all-runners"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[audiences.r]\nexpression = "orders > \\"x\\""\n',
            "F: audience 'r': expression column 8: cannot compare a number with a string",
        ),
        ("[audiences.r]\nmarketing = true\n", "F: audience 'r': 'expression' (a string) is"),
        ('[audiences.r]\nexpression = "orders > 1"\nmarketing = "yes"\n', "'marketing' is true"),
        ('[audiences.r]\nexpression = "orders > 1"\nmarketting = true\n', "unknown keys"),
        ('[audiences."Bad Name"]\nexpression = "orders > 1"\n', "audience name 'Bad Name'"),
        ('[audience.r]\nexpression = "orders > 1"\n', "unknown top-level keys ['audience']"),
        ("[audiences.r\n", "F: invalid TOML"),
    ],
)
def test_file_errors_are_one_line_naming_file_and_audience(
    tmp_path: Path, body: str, message: str
) -> None:
    path = tmp_path / "F"
    path.write_text(body)
    with pytest.raises(AudienceFileError) as info:
        load_audiences(path)
    text = str(info.value).replace(str(tmp_path) + "/", "")
    assert message in text
    assert "\n" not in text


def test_a_missing_file_and_no_file() -> None:
    with pytest.raises(AudienceFileError, match="cannot read"):
        load_audiences("/nonexistent/audiences.toml")
    assert len(load_audiences(None)) == 0
    assert len(from_mapping({})) == 0


def test_the_example_file_in_docs_is_valid() -> None:
    audiences = load_audiences(Path(__file__).parents[2] / "docs" / "audiences.toml")
    assert "running-shoe-reminder" in audiences.by_name
    assert audiences.by_name["running-shoe-reminder"].marketing
    assert audiences.time_dependent


def test_the_demo_audiences_are_valid_and_read_categories_the_simulator_sells() -> None:
    from streams.cli.demo_audiences import DEMO_AUDIENCES
    from streams.simulate import CATEGORIES

    audiences = load_audiences(DEMO_AUDIENCES)
    assert any(a.marketing and a.expression.time_dependent for a in audiences)
    categories = {
        name.split(".", 1)[1]
        for a in audiences
        for name in a.expression.fields
        if name.startswith(("category_", "days_since_last_purchase."))
    }
    assert categories, "the demo's story needs a per-category audience"
    assert categories <= set(CATEGORIES)


def test_an_invalid_file_stops_a_worker_with_one_config_line(tmp_path: Path) -> None:
    path = tmp_path / "audiences.toml"
    path.write_text('[audiences.r]\nexpression = "orders >= 1 and"\n')
    with pytest.raises(ConfigError) as info:
        configured_audiences(LoomSettings(audiences_file=path))
    assert str(info.value) == (
        f"LOOM_AUDIENCES_FILE: {path}: audience 'r': expression column 16: "
        "expected a value or a field, found the end"
    )
