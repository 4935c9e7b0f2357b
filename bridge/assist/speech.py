"""What to say: Home Assistant's response templates in the utterance's language, ours otherwise.

home-assistant-intents ships the answers HA speaks, as Jinja2 templates over `slots`, `state`
and `query`; they are rendered in Jinja2's sandbox (the templates are data, and the slot values
in them came from a user's sentence). Our own intents (room presence, cancel all) and anything
a language lacks come from phrases.py, in the utterance's language (English for a language the
bridge ships no phrases for).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable

from jinja2.sandbox import SandboxedEnvironment

from bridge.assist.phrases import OWN
from bridge.assist.robust import base_language

log = logging.getLogger(__name__)

class Speech:
    def __init__(self, responses: Callable[[str], dict[str, Any] | None]) -> None:
        """`responses(language)`: home-assistant-intents' answers for a loaded language, or None."""
        self._env = SandboxedEnvironment(autoescape=False)
        self._cache: dict[str, Any] = {}
        self._responses = responses

    def own(self, language: str, key: str, **values: Any) -> str:
        table = OWN.get(base_language(language).lower(), OWN["en"])
        text = table.get(key) or OWN["en"][key]
        try:
            return text.format(**values)
        except (KeyError, IndexError):
            return OWN["en"]["handle_error"] if key != "handle_error" else text

    def join(self, language: str, items: list[str]) -> str:
        if len(items) <= 1:
            return "".join(items)
        return ", ".join(items[:-1]) + f" {self.own(language, 'and')} " + items[-1]

    def intent(self, language: str, intent: str, key: str | None, context: dict[str, Any]) -> str | None:
        """HA's answer for an intent's response key, or None if this language has none."""
        template = ((self._responses(language) or {}).get("intents", {}).get(intent, {}) or {}).get(key or "default")
        return None if template is None else self._render(template, context)

    def error(self, language: str, key: str, **values: Any) -> str:
        template = ((self._responses(language) or {}).get("errors", {}) or {}).get(key)
        if template is not None:
            text = self._render(template, values)
            if text:
                return text
        return self.own(language, key if key in OWN["en"] else "no_targets", **values)

    def _render(self, template: str, context: dict[str, Any]) -> str | None:
        try:
            compiled = self._cache.get(template)
            if compiled is None:
                compiled = self._cache[template] = self._env.from_string(template)
            return re.sub(r"\s+", " ", compiled.render(**context)).strip()
        except Exception as exc:  # a template this renderer cannot run: say ours instead
            log.debug("response template failed: %s", exc)
            return None
