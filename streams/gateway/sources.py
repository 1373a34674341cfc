"""Write keys and the sources they stand for, and Shopify shops (``LOOM_GATEWAY_SOURCES_FILE``,
TOML; the ``[[shopify]]`` tables are described in :mod:`streams.gateway.shopify_shops`).

One ``[[source]]`` table per write key::

    [[source]]
    name = "web-shop"          # the touchpoints' `source`; a metric label
    channel = "web"            # touchpoint channel of everything this key sends
    region = "NO"              # default region: consent jurisdiction, phone numbers
    currency = "NOK"           # for orders that name none (default USD, as Segment)
    write_key = "..."          # the key itself, or instead:
    # write_key_sha256 = "..." # its SHA-256 in hex, so the file holds no secret

Keys are looked up by their SHA-256, so no comparison of secrets leaks timing, and the keys
themselves are held only as :class:`~pydantic.SecretStr` while the file is read.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from schemas.errors import LoomError
from schemas.inbound.base import Source
from schemas.touchpoint import Channel, Region
from streams.gateway.shopify_shops import ShopEntry, Shops

#: Source names are metric labels and touchpoint sources: short, lower-case, no spaces.
SOURCE_NAME: Final = r"^[a-z][a-z0-9_.-]{0,63}$"


class SourcesError(LoomError):
    """The sources file is missing, unreadable or invalid (one line, no key values)."""


class SourceEntry(BaseModel):
    """One ``[[source]]`` table of the sources file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=SOURCE_NAME)]
    channel: Channel
    region: Region | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    write_key: Annotated[SecretStr, Field(min_length=8, max_length=256)] | None = None
    write_key_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        if (self.write_key is None) == (self.write_key_sha256 is None):
            raise ValueError("give exactly one of write_key and write_key_sha256")
        return self

    @property
    def key_hash(self) -> str:
        if self.write_key is not None:
            return key_hash(self.write_key.get_secret_value())
        assert self.write_key_sha256 is not None
        return self.write_key_sha256

    def source(self) -> Source:
        return Source(self.name, self.channel, self.region, self.currency)


class SourcesFile(BaseModel):
    """The whole file: write keys (``[[source]]``) and Shopify shops (``[[shopify]]``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: tuple[SourceEntry, ...] = ()
    shopify: tuple[ShopEntry, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if not self.source and not self.shopify:
            raise ValueError("no [[source]] and no [[shopify]] table: nothing to accept")
        names = [s.name for s in self.source]
        if len(set(names)) != len(names):
            raise ValueError("source names must be unique")
        hashes = [s.key_hash for s in self.source]
        if len(set(hashes)) != len(hashes):
            raise ValueError("two sources have the same write key")
        shops = [s.name for s in self.shopify]
        domains = [s.domain.lower() for s in self.shopify]
        if len(set(shops)) != len(shops) or len(set(domains)) != len(domains):
            raise ValueError("shop names and domains must be unique")
        return self


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """What the sources file configures: write keys and Shopify shops."""

    keys: WriteKeys
    shops: Shops

    @classmethod
    def from_file(cls, path: Path | None) -> GatewayConfig:
        parsed = read_sources(path)
        return cls(WriteKeys.from_entries(parsed.source), Shops(parsed.shopify))


def read_sources(path: Path | None) -> SourcesFile:
    """Read the sources file; raises :class:`SourcesError` with a one-line reason (it names
    the table and field, never a value: the file holds secrets)."""
    if path is None:
        raise SourcesError(
            "no write keys configured: set LOOM_GATEWAY_SOURCES_FILE (or --sources) to a "
            "TOML file of [[source]] (and [[shopify]]) tables (README, 'Sending events over "
            "HTTP')"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SourcesError(f"{path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise SourcesError(
            f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 (TOML is UTF-8)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise SourcesError(f"{path}: not valid TOML ({exc})") from None
    try:
        return SourcesFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise SourcesError(f"{path}: {where}: {first['msg']}") from None


def key_hash(write_key: str) -> str:
    return hashlib.sha256(write_key.encode("utf-8", "surrogatepass")).hexdigest()


class WriteKeys:
    """Which source a write key belongs to."""

    def __init__(self, by_hash: Mapping[str, Source]) -> None:
        self._by_hash = dict(by_hash)

    @classmethod
    def of(cls, keys: Mapping[str, Source]) -> WriteKeys:
        """From plain ``write key -> source`` (tests, benchmarks)."""
        return cls({key_hash(k): s for k, s in keys.items()})

    @classmethod
    def from_entries(cls, entries: Iterable[SourceEntry]) -> WriteKeys:
        return cls({e.key_hash: e.source() for e in entries})

    @classmethod
    def from_file(cls, path: Path | None) -> WriteKeys:
        """The write keys of the sources file (:func:`read_sources`)."""
        return cls.from_entries(read_sources(path).source)

    def source_for(self, write_key: str | None) -> Source | None:
        if not write_key:
            return None
        return self._by_hash.get(key_hash(write_key))

    def sources(self) -> list[Source]:
        return sorted(self._by_hash.values(), key=lambda s: s.name)
