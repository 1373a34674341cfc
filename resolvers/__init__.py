"""Pure decision logic: identity resolution, consent, profile aggregation, inventory.

Nothing here imports faust, confluent_kafka or redis (tests/unit/test_layering.py checks it).
Functions take typed state and return effects as values; ``streams`` applies them.
"""
