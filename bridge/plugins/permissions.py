"""What a plugin may do: its manifest's permission claims, checked on every host call.

`state:read:<glob>`, `state:write:<glob>`, `event:fire:<glob>` and `service:call:<glob of
domain.service>` match with shell globs; `mqtt:publish:<filter>` grants topics the filter
matches, `mqtt:subscribe:<filter>` filters no wider than it. Nothing is granted by default.
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

    def allows(self, kind: str, subject: str) -> bool:
        patterns = self._globs.get(kind, ())
        if kind == "mqtt:publish":
            return any(topic_matches_sub(p, subject) for p in patterns)
        if kind == "mqtt:subscribe":
            return any(filter_within(subject, p) for p in patterns)
        return any(fnmatchcase(subject, p) for p in patterns)
