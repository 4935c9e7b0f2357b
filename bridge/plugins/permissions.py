"""What a plugin may do: its manifest's permission claims, checked on every host call.

`state:read:<glob>`, `state:write:<glob>`, `event:fire:<glob>` and `service:call:<glob of
domain.service>` match with shell globs; `mqtt:publish:<filter>` grants topics the filter
matches, `mqtt:subscribe:<filter>` filters no wider than it. Nothing is granted by default.

The bridge's own topics are reserved (`reserved_topic`): a wide grant such as `mqtt:publish:#`
does not reach them; only a permission that names the reserved part literally does
(`mqtt:publish:ruview/bridge/request/plugin/list`), so a plugin cannot drive the request API,
forge a status, a discovery config or a service call by accident of a wildcard.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from paho.mqtt.client import topic_matches_sub


def filter_within(requested: str, granted: str) -> bool:
    """Whether every topic `requested` can match is one `granted` matches too."""
    req, grant = requested.split("/"), granted.split("/")
    for i, level in enumerate(grant):
        if level == "#":
            return True
        if i >= len(req):
            return False
        if level == "+":
            if req[i] == "#":
                return False
            continue
        if req[i] != level:
            return False
    return len(req) == len(grant)


class Permissions:
    def __init__(self, claims: list[str]) -> None:
        self._globs: dict[str, list[str]] = {}
        for claim in claims:
            if claim == "entity:register":
                self._globs.setdefault(claim, []).append("*")
                continue
            a, b, pattern = claim.split(":", 2)
            self._globs.setdefault(f"{a}:{b}", []).append(pattern)

    def allows(self, kind: str, subject: str, reserved: str | None = None) -> bool:
        """Whether a claim grants `subject`. For MQTT, when the topic lies under a `reserved`
        prefix, only a filter whose literal part (before any wildcard) covers it counts."""
        patterns = self._globs.get(kind, ())
        if reserved is not None and kind.startswith("mqtt:"):
            patterns = [p for p in patterns if _names(p, reserved)]
        if kind == "mqtt:publish":
            return any(topic_matches_sub(p, subject) for p in patterns)
        if kind == "mqtt:subscribe":
            return any(filter_within(subject, p) for p in patterns)
        return any(fnmatchcase(subject, p) for p in patterns)


def _names(topic_filter: str, reserved: str) -> bool:
    """Whether a filter names a reserved prefix literally (its part before a wildcard covers it)."""
    literal = topic_filter.split("+", 1)[0].split("#", 1)[0]
    return literal.startswith(reserved)
