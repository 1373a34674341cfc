"""Inbound formats translated into touchpoint v1, one module per front door of ``loom gateway``.

* :mod:`schemas.inbound.base`: what every front door shares (the configured :class:`Source`
  of a request, money and timestamp parsing, stable event ids);
* :mod:`schemas.inbound.segment`: Segment spec messages (HTTP Tracking API, common fields,
  clock-skew correction), with the e-commerce spec v2 table in
  :mod:`schemas.inbound.segment_commerce`;
* :mod:`schemas.inbound.shopify`: Shopify webhooks (topic table, dispatch), one module per
  group of topics (``shopify_orders``, ``shopify_fulfilments``, ``shopify_refunds``,
  ``shopify_customers``, ``shopify_inventory``, ``shopify_privacy``) over the shared
  ``shopify_model`` (shop, delivery, memo, result) and ``shopify_common`` (ids, values, people).
  A webhook maps to zero or more touchpoints, plus what the gateway must remember of orders
  and customers, plus a privacy request record for the compliance topics.

Pure: no I/O, no clock (the gateway passes the time it received a request). Each mapper turns
one message into a validated :class:`~schemas.touchpoint.Touchpoint` or raises
:class:`~schemas.errors.InvalidEvent`, whose field names the sender's own field
(``properties.products[0].sku``) and whose message never contains a value.
"""
