"""``loom gateway``: the HTTP collection API in front of the raw topic.

Browsers, apps and servers cannot produce to Kafka; they send to the gateway with the SDKs
they already use, and it answers 200 only once Kafka acknowledged their events (it never
processes them: the workers do). One module per job:

* :mod:`~streams.gateway.server`: one process (sink, front doors, HTTP and ops servers);
* :mod:`~streams.gateway.app`: the aiohttp app, errors, request metrics, CORS;
* :mod:`~streams.gateway.segment_api`: the Segment front door (routes, auth, limits, answers);
  its mapping to touchpoints is pure, in :mod:`schemas.inbound.segment`;
* :mod:`~streams.gateway.sources`: write keys and the sources they stand for;
* :mod:`~streams.gateway.body`: bodies within limits, gzip;
* :mod:`~streams.gateway.records`: touchpoint and dead-letter records;
* :mod:`~streams.gateway.sink`: Kafka with ``acks=all``, backpressure, and an in-memory fake;
* :mod:`~streams.gateway.errors`, :mod:`~streams.gateway.metrics`.

A second front door (Shopify webhooks) is another routes module beside ``segment_api`` and a
mapping module beside ``schemas.inbound.segment``, added to ``Gateway.front_doors``.
"""
