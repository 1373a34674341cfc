"""``streams.resp.RespPacker`` packs every command byte for byte as redis-py's hiredis packer."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.connection import HiredisRespSerializer

from streams.resp import RespPacker

ARG = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=50),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
NAME = st.one_of(
    st.sampled_from(["EVALSHA", "SCRIPT LOAD", "XREADGROUP", b"SET", b"CLIENT SETNAME"]),
    st.binary(min_size=1, max_size=20),
    st.text(min_size=1, max_size=20),
)


def hiredis_pack(*args: Any) -> bytes:
    return b"".join(HiredisRespSerializer().pack(*args))


@given(NAME, st.lists(ARG, max_size=40))
def test_packs_as_hiredis_does(name: Any, args: list[Any]) -> None:
    assert RespPacker().pack(name, *args) == [hiredis_pack(name, *args)]


def test_a_large_command_is_one_chunk() -> None:
    args = ["EVALSHA", "a" * 40, 0, b"p" * 330_000, *(b"v%d" % i * 100 for i in range(2_700))]
    (packed,) = RespPacker().pack(*args)
    assert packed == hiredis_pack(*args)
    assert packed.startswith(b"*2704\r\n$7\r\nEVALSHA\r\n")


@pytest.mark.parametrize("odd", [1.5, memoryview(b"mv"), bytearray(b"ba"), -0.25])
def test_other_types_are_left_to_redis_py(odd: Any) -> None:
    assert b"".join(RespPacker().pack("SET", "k", odd)) == hiredis_pack("SET", "k", odd)


@pytest.mark.parametrize("bad", [True, None, object()])
def test_wrong_types_fail_as_before(bad: Any) -> None:
    with pytest.raises(redis.DataError):
        RespPacker().pack("SET", "k", bad)
