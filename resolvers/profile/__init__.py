"""The customer profile: facts folded per group of events (:mod:`.facts`), their stored JSON
form (:mod:`.codec`), and the public snapshot rendered through the consent gate
(:mod:`.render`)."""
