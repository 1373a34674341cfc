"""``loom erase TYPE:VALUE``: an operator's erasure request, and ``loom dlq replay``.

``loom erase`` does not touch Redis itself: it produces an ``erasure_requested`` touchpoint to
the raw topic, so the erasure goes through the same pipeline (and the same atomic commit,
suppression and announcements) as one sent by any channel, and is in Kafka's history.
With ``--wait`` it polls the profiles' Redis (``--redis-url``/``--prefix``, else the settings;
phone numbers without a country code in ``--region``, else ``LOOM_DEFAULT_REGION``) until the
erasure was applied: the identifier's tombstone, named by a request, is in ``P:v1:suppressed``
(under its salted hash: ``LOOM_SUPPRESSION_SALT`` must be the workers') and the identifier
resolves to no profile. "No longer resolves" alone was no proof: an identifier no profile
held (a typo, a person never seen, events not processed yet) met it before any worker read
the request. What it then says depends on whether a profile held the identifier when the
request was sent: ``erased: ...`` or ``done: ...; no profile held it ...`` (exit 0 both: the
erasure is in force, later events carrying the identifier are dropped; "done" does not claim
that nothing was erased: events ahead of the request may have built a profile it erased); not
applied in time: exit 1.

``loom dlq replay`` re-sends dead letters to the raw topic after a fix: original key (to the
partition the producer SDK sends it to) and bytes, plus a ``loom.replayed_from`` header naming
the DLQ record. Its consumer group remembers what was replayed; ``--stage``/``--reason``
filter; ``--dry-run`` only counts. Dead letters of ``loom gateway`` (stage ``gateway``) are
never replayed to the raw topic: they are the senders' own messages, to be sent to the gateway
again once fixed.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from resolvers.timefmt import format_time
from streams.cli.options import add_kafka_options, add_redis_options, connect
from streams.cli.reading import redis_target


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("erase", help="erase a person (GDPR art. 17)")
    p.add_argument("identifier", help="TYPE:VALUE, e.g. email:jane@example.com")
    p.add_argument("--region", help="region for phone numbers without country code")
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds until the erasure was applied (suppressed, resolves to nothing)",
    )
    add_kafka_options(p)
    add_redis_options(p)  # where --wait reads profiles
    p.set_defaults(func=run_erase)

    d: argparse.ArgumentParser = sub.add_parser("dlq", help="dead-letter queue tools")
    dsub = d.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    r = dsub.add_parser("replay", help="re-send DLQ records to the raw topic")
    r.add_argument("--stage", help="only records that failed in this stage")
    r.add_argument("--reason", help="only records with this reason code")
    r.add_argument("--group", default=None, help="consumer group (default: <app_id>-dlq-replay)")
    r.add_argument("--dry-run", action="store_true", help="count, send nothing, commit nothing")
    add_kafka_options(r)
    r.set_defaults(func=run_replay)


def _refusal(id_type: str, value: str, region: str | None) -> str | None:
    """Why the pipeline would never hold this identifier (a malformed e-mail, a placeholder),
    for the built-in types; None if it might. Never quotes the value."""
    from schemas.normalize import DEFAULT, Rejected, normalize_one

    if id_type not in DEFAULT.known_types:
        return None  # a type of the deployment's identity rules: the pipeline decides
    result = normalize_one(id_type, value, region=region)
    if isinstance(result, Rejected):
        return f"not a valid {id_type} identifier ({result.reason})"
    return None


def run_erase(args: argparse.Namespace) -> int:
    from schemas.errors import InvalidEvent
    from schemas.touchpoint import validate_touchpoint
    from streams.producer import DeliveryReport, TouchpointProducer

    id_type, sep, value = args.identifier.partition(":")
    if not sep or not value:
        print("identifier must be TYPE:VALUE, e.g. email:jane@example.com", file=sys.stderr)
        return 2
    settings = connect(args, kafka=True)
    event = {
        "event_id": f"erase-{uuid.uuid4().hex}",
        "type": "erasure_requested",
        "channel": "backoffice",
        "occurred_at": format_time(datetime.now(UTC)),
        "source": "loom-cli",
        "identifiers": {id_type: value},
        **({"region": args.region} if args.region else {}),
    }
    try:
        validate_touchpoint(event)
    except InvalidEvent as exc:  # names the field (--region), never the value
        print(f"loom erase: {exc}; nothing sent", file=sys.stderr)
        return 2
    refused = _refusal(id_type, value, args.region or settings.default_region)
    if refused:
        print(f"loom erase: {refused}; nothing sent", file=sys.stderr)
        return 2
    held = _held_before(args, id_type, value)
    producer = TouchpointProducer(settings)
    reports: list[DeliveryReport] = []
    producer.send(event, on_delivery=reports.append)
    producer.close(30)
    if not (reports and reports[0].ok):
        why = f": {reports[0].error}" if reports else " within 30 s"
        print(f"loom erase: erasure request not delivered to Kafka{why}", file=sys.stderr)
        return 3
    print(f"erasure requested ({event['event_id']}) for a {id_type} identifier")
    if args.wait <= 0:
        return 0
    return _wait_applied(args, id_type, value, held=held)


def _held_before(args: argparse.Namespace, id_type: str, value: str) -> bool | None:
    """Whether a profile holds the identifier now (before the request is sent), for what
    ``--wait`` will say; None without ``--wait``."""
    if args.wait <= 0:
        return None
    from streams.reader import InvalidIdentifierError, ProfileReader

    client, prefix, settings = redis_target(args)
    try:
        reader = ProfileReader(client, prefix, default_region=settings.default_region)
        return reader.lookup(id_type, value, region=args.region) is not None
    except InvalidIdentifierError:
        return False  # answered by the wait (one line, exit 2)
    finally:
        client.close()


def _wait_applied(args: argparse.Namespace, id_type: str, value: str, *, held: bool | None) -> int:
    """Poll until the erasure was applied (module doc): a tombstone a request named, and no
    profile holding the identifier; then say what it did."""
    from resolvers.context import suppression_hash
    from streams.reader import InvalidIdentifierError, ProfileReader

    client, prefix, settings = redis_target(args)
    reader = ProfileReader(client, prefix, default_region=settings.default_region)
    salt = settings.suppression_salt.get_secret_value().encode()
    deadline = time.monotonic() + args.wait
    resolves = True
    try:
        digest = suppression_hash(reader.normalize(id_type, value, args.region), salt)
        while time.monotonic() < deadline:
            tomb = client.hget(reader.keys.suppressed, digest)
            named = tomb is not None and bool(orjson.loads(tomb).get("n"))
            resolves = reader.lookup(id_type, value, region=args.region) is not None
            if named and not resolves:
                if held:
                    print("erased: the profile that held the identifier is gone, and the")
                    print("identifier is suppressed (later events carrying it are dropped)")
                else:
                    # not "nothing was erased": events ahead of the request, not processed
                    # when it was sent, may have built a profile it then erased
                    print("done: the identifier is suppressed (events carrying it are dropped")
                    print("from now on); no profile held it when the request was sent (a typo?")
                    print("a person Loom never saw? events not processed yet: a profile they")
                    print("built was erased with it)")
                return 0
            time.sleep(0.5)
    except InvalidIdentifierError as exc:
        print(f"loom erase --wait: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()
    dev = " (the development default)" if settings.uses_dev_salt else ""
    if held and not resolves:  # processed, most likely: the tombstone is under another hash
        print(
            "loom erase --wait: the profile that held the identifier is gone, but no tombstone "
            f"is under this command's LOOM_SUPPRESSION_SALT{dev}: is it the workers' salt?",
            file=sys.stderr,
        )
        return 1
    print(
        f"loom erase --wait: the erasure was not processed within {args.wait:.0f}s: is the "
        f"profiles worker running, with this command's LOOM_SUPPRESSION_SALT{dev}?",
        file=sys.stderr,
    )
    return 1


#: ``loom.stage`` of the gateway's dead letters (streams.gateway.records.STAGE).
GATEWAY_STAGE = "gateway"


def run_replay(args: argparse.Namespace) -> int:
    from confluent_kafka import TopicPartition

    from streams import kafka_clients
    from streams.producer import DEFAULT_CONFIG

    settings = connect(args, kafka=True)
    dlq, raw = settings.topics.dlq, settings.topics.raw
    consumer = kafka_clients.consumer(
        settings,
        args.group or f"{settings.app_id}-dlq-replay",
        **{"auto.offset.reset": "earliest", "enable.auto.commit": False},
    )
    meta = consumer.list_topics(dlq, timeout=10).topics.get(dlq)
    if meta is None or meta.error is not None:
        consumer.close()
        print(f"loom dlq replay: no DLQ topic {dlq}", file=sys.stderr)
        return 1
    # the SDK's partitioner: a key (an identifier) lands where every other producer of the raw
    # topic sends it, not where librdkafka's default (CRC32) would
    producer = kafka_clients.producer(settings, partitioner=DEFAULT_CONFIG["partitioner"])
    ends, todo = _replay_range(consumer, dlq, meta.partitions)
    consumer.subscribe([dlq])
    done: dict[int, int] = {}  # partition -> the offset to commit (after the last one read)
    seen: Counter[str] = Counter()
    failed: Counter[str] = Counter()  # re-sends the broker refused: no offset committed then

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failed[err.str()] += 1

    matched = 0
    idle_since = time.monotonic()
    while todo and time.monotonic() - idle_since < 15:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        partition, offset = msg.partition() or 0, msg.offset() or 0
        if offset >= ends[partition]:
            continue  # arrived after the start: neither replayed nor committed
        idle_since = time.monotonic()
        stage, reason = _header(msg, "loom.stage"), _header(msg, "loom.reason")
        seen[f"{stage}/{reason}"] += 1
        # the gateway's dead letters hold the sender's own messages (Segment JSON), never
        # touchpoints: the raw topic would reject them again; they are re-sent to the gateway
        wanted = (
            stage != GATEWAY_STAGE and args.stage in (None, stage) and args.reason in (None, reason)
        )
        matched += wanted
        if wanted and not args.dry_run:
            origin = f"{dlq}[{partition}]@{offset}".encode()
            _resend(producer, raw, msg, origin, delivered)
        done[partition] = offset + 1
        if offset + 1 >= ends[partition]:
            todo.discard(partition)
    if not args.dry_run:
        if producer.flush(30) or failed:
            why = "; ".join(f"{n} {error}" for error, n in sorted(failed.items()))
            print(
                "loom dlq replay: replayed records not delivered"
                f"{': ' + why if why else ''}; offsets not committed",
                file=sys.stderr,
            )
            consumer.close()
            return 3
        if done:  # nothing consumed = nothing to commit
            offsets = [TopicPartition(dlq, p, offset) for p, offset in done.items()]
            consumer.commit(offsets=offsets, asynchronous=False)
    consumer.close()
    for key, n in sorted(seen.items()):
        print(f"{n:8d}  {key}")
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{verb} {matched} of {sum(seen.values())} DLQ records to {raw}")
    return 0


def _resend(producer: Any, topic: str, msg: Any, origin: bytes, on_delivery: Any) -> None:
    """``msg``'s key and bytes to ``topic``, with ``loom.replayed_from: origin``."""
    headers = [("loom.replayed_from", origin)]
    while True:
        try:
            producer.produce(
                topic, on_delivery=on_delivery, key=msg.key(), value=msg.value(), headers=headers
            )
            break
        except BufferError:  # the local queue is full: serve reports until there is room
            producer.poll(0.05)
    producer.poll(0)


def _replay_range(
    consumer: Any, dlq: str, partitions: Iterable[int]
) -> tuple[dict[int, int], set[int]]:
    """The end offsets of now and the partitions with records to replay before them: from the
    group's offset (none yet, or one retention has passed since: the earliest retained record)
    up to those ends. What arrives later (a replayed record failing again, say) is the next
    run's. The offsets are read as the workers read them: a moving coordinator asked again, a
    partition whose offset could not be read an error (never "start from the earliest")."""
    from confluent_kafka import TopicPartition

    from streams.generation import committed_offsets

    bounds = {
        p: consumer.get_watermark_offsets(TopicPartition(dlq, p), timeout=10) for p in partitions
    }
    ends = {p: high for p, (_, high) in bounds.items()}
    committed = committed_offsets(consumer, dlq, sorted(ends))
    todo = {
        tp.partition
        for tp in committed
        if max(tp.offset, bounds[tp.partition][0]) < ends[tp.partition]
    }
    return ends, todo


def _header(msg: Any, name: str) -> str:
    for key, value in msg.headers() or []:
        if key == name:
            return bytes(value or b"").decode(errors="replace")
    return ""
