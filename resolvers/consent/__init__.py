"""Consent: never fails open. One module per job:

* :mod:`~resolvers.consent.vocabulary` purposes, sources, reasons, what each purpose gates;
* :mod:`~resolvers.consent.errors` the error tree;
* :mod:`~resolvers.consent.policy` jurisdiction defaults and their TOML loader;
* :mod:`~resolvers.consent.formats` vendor signals (Segment, Google Consent Mode, IAB TCF);
* :mod:`~resolvers.consent.signals` what one event says about consent;
* :mod:`~resolvers.consent.history` a person's history, a function of the set of events;
* :mod:`~resolvers.consent.gate` the one place that decides what data may serve a purpose.

``docs/consent.md`` is the long form.
"""

from resolvers.consent.errors import ConsentError, ConsentStateError, PolicyError
from resolvers.consent.gate import (
    BehaviourPruning,
    Current,
    Gate,
    Verdict,
    behaviour_denials,
    behaviour_never_by_itself,
    later_of,
    never_serves,
)
from resolvers.consent.history import (
    EMPTY_HISTORY,
    ConsentHistory,
    ConsentRecord,
    PurposeHistory,
    from_event,
)
from resolvers.consent.policy import (
    MAX_EXPLICIT_GRANTS,
    ConsentPolicy,
    load_policy,
    policy_from_mapping,
)
from resolvers.consent.signals import (
    EXPLICIT_TYPES,
    NO_STATEMENTS,
    EventConsent,
    Statement,
    statements,
)
from resolvers.consent.vocabulary import (
    CONSENT_PURPOSES,
    EEA_REGIONS,
    PURPOSE_GATES,
    Decision,
    Purpose,
    Reason,
    Source,
    gated_fields,
)

__all__ = [
    "CONSENT_PURPOSES",
    "EEA_REGIONS",
    "EMPTY_HISTORY",
    "EXPLICIT_TYPES",
    "MAX_EXPLICIT_GRANTS",
    "NO_STATEMENTS",
    "PURPOSE_GATES",
    "BehaviourPruning",
    "ConsentError",
    "ConsentHistory",
    "ConsentPolicy",
    "ConsentRecord",
    "ConsentStateError",
    "Current",
    "Decision",
    "EventConsent",
    "Gate",
    "PolicyError",
    "Purpose",
    "PurposeHistory",
    "Reason",
    "Source",
    "Statement",
    "Verdict",
    "behaviour_denials",
    "behaviour_never_by_itself",
    "from_event",
    "gated_fields",
    "later_of",
    "load_policy",
    "never_serves",
    "policy_from_mapping",
    "statements",
]
