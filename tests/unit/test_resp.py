"""``streams.resp.RespPacker`` packs every command byte for byte as redis-py's hiredis packer."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.connection import HiredisRespSerializer

from streams.resp import OWN_CHUNK, RespPacker

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


@given(NAME, st.lists(ARG, max_size=40), st.integers(min_value=0, max_value=64))
def test_chunks_join_to_what_hiredis_packs(name: Any, args: list[Any], own_chunk: int) -> None:
    chunks = RespPacker(own_chunk).pack(name, *args)
    assert b"".join(chunks) == hiredis_pack(name, *args)
    # chunks alternate: joined pieces, then an argument of own_chunk bytes or more sent as it
    # is (a bytes argument is the very object, not a copy), ..., and joined pieces last
    joined, alone = chunks[0::2], chunks[1::2]
    assert all(len(c) >= own_chunk for c in alone)
    assert all(c.endswith(b"$%d\r\n" % len(a)) for c, a in zip(joined, alone, strict=False))
    large = [a for a in args if type(a) is bytes and len(a) >= own_chunk]
    assert all(any(c is a for c in alone) for a in large)


def test_a_large_command_copies_only_its_small_arguments() -> None:
    plan, entry = b"p" * 330_000, b"o" * OWN_CHUNK
    small = [b"v%d" % i * 100 for i in range(2_700)]
    args = ["EVALSHA", "a" * 40, 0, plan, *small, entry]
    chunks = RespPacker().pack(*args)
    assert b"".join(chunks) == hiredis_pack(*args)
    head, first, middle, second, tail = chunks
    assert first is plan
    assert second is entry
    assert head == b"*2705\r\n$7\r\nEVALSHA\r\n$40\r\n" + b"a" * 40 + b"\r\n$1\r\n0\r\n$330000\r\n"
    assert middle.startswith(b"\r\n$200\r\nv0v0")
    assert middle.endswith(b"\r\n$%d\r\n" % OWN_CHUNK)
    assert tail == b"\r\n"


def test_a_command_without_large_arguments_is_one_chunk() -> None:
    args = ["EVALSHA", "a" * 40, 0, b"x" * (OWN_CHUNK - 1), "é" * 100]
    assert RespPacker().pack(*args) == [hiredis_pack(*args)]


@pytest.mark.parametrize("odd", [1.5, memoryview(b"mv"), bytearray(b"ba"), -0.25])
def test_other_types_are_left_to_redis_py(odd: Any) -> None:
    assert b"".join(RespPacker().pack("SET", "k", odd)) == hiredis_pack("SET", "k", odd)


@pytest.mark.parametrize("bad", [True, None, object()])
def test_wrong_types_fail_as_before(bad: Any) -> None:
    with pytest.raises(redis.DataError):
        RespPacker().pack("SET", "k", bad)
