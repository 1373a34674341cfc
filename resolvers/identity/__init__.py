"""Identity: who is who, as a function of the set of events.

* :mod:`.rules` priorities, limits, unique and device types, shared-identifier thresholds;
* :mod:`.evidence` atoms (identifier sets with their earliest event), identifier records,
  groups and profile ids;
* :mod:`.cluster` the people the atoms make, replayed in canonical order;
* :mod:`.erasure` what an erasure covers, whatever the order.

The stage that applies them to a batch is ``resolvers.stages.identity``.
"""
