"""Which handler each agent runs for each of its input topics: the code's side of
``topology.yaml``'s ``agents`` section.

``topology.yaml`` declares every agent's inputs; ``processors.app`` builds each agent's
input topics from it and this table gives the handler for each (``handler object``,
``method``). ``mismatches`` compares the two, so a topic added to one and not the other
fails ``oddsflow topology check`` and the worker's start with a clear error instead of
being silently unconsumed. Plain data, no Faust import: the topology check reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# agent -> {input topic key: (handler, method)}; handler is "markets", "provider" or "wallet".
ROUTES: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "pricing": {
        "fixtures": ("markets", "on_fixture"),
        "price_updates": ("markets", "on_price_update"),
        "market_status": ("markets", "on_market_status"),
        "scores": ("markets", "on_score"),
        "results": ("markets", "on_result"),
        "settle_continuations": ("markets", "on_settle_continuation"),
        # Provider-settled markets (Sportradar UOF): processors.provider.
        "provider_settlements": ("provider", "on_provider_settlement"),
        "provider_cancels": ("provider", "on_provider_cancel"),
    },
    # The event side of a bet, off the decision path, and the authoritative path.
    "market_check": {
        "leg_commands": ("markets", "on_leg_command"),
        "accepted_legs": ("markets", "on_accepted_leg"),
    },
    # In-play bet delay: a held bet is decided again against the view when its time has come.
    "bet_delay": {"bet_delays": ("wallet", "on_bet_delay")},
    "wallet": {
        "bet_requests": ("wallet", "on_bet_request"),
        "deposits": ("wallet", "on_deposit"),
        "leg_verdicts": ("wallet", "on_leg_verdict"),
        "leg_settlements": ("wallet", "on_leg_settlements"),
        "quota_grants": ("wallet", "on_quota_message"),
    },
}


def mismatches(
    agents: Mapping[str, Mapping[str, Any]],
    routes: Mapping[str, Mapping[str, tuple[str, str]]] = ROUTES,
) -> list[str]:
    """Every disagreement between topology.yaml's agents and the code's routes."""
    problems: list[str] = []
    for name in sorted(set(routes) - set(agents)):
        problems.append(f"agent {name}: runs in processors but topology.yaml does not declare it")
    for name in sorted(set(agents) - set(routes)):
        problems.append(f"agent {name}: declared in topology.yaml but no processor runs it")
    consumers: dict[str, list[str]] = {}
    for name in sorted(set(agents) & set(routes)):
        declared = set(agents[name].get("inputs") or [])
        handled = set(routes[name])
        for key in sorted(declared - handled):
            problems.append(
                f"agent {name}: topology.yaml input {key!r} has no handler in processors"
            )
        for key in sorted(handled - declared):
            problems.append(
                f"agent {name}: handles {key!r}, which topology.yaml does not list as an input"
            )
        for key in declared:
            consumers.setdefault(key, []).append(name)
    for key, names in sorted(consumers.items()):
        if len(names) > 1:
            problems.append(f"topic {key!r} is an input of several agents: {', '.join(names)}")
    return problems
