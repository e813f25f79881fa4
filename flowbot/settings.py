"""The environment → Settings. Secrets are wrapped so that no repr, log line or error
shows them; `Settings.secrets()` lists their values for the redaction filter."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from flowbot.errors import ConfigError

ADOBE_API_URL = "https://platform.adobe.io/data/foundation/flowservice"
ADOBE_IMS_URL = "https://ims-na1.adobelogin.com/ims/token/v3"
SLACK_API_URL = "https://slack.com/api/"
DEFAULT_SCOPES = "openid,AdobeID,read_organizations,additional_info.projectedProductContext"


class Secret:
    """A string that never shows itself: `str()` and `repr()` print '***'."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


@dataclass(frozen=True)
class Settings:
    api_url: str = ADOBE_API_URL
    ims_url: str = ADOBE_IMS_URL
    client_id: str = ""
    client_secret: Secret = Secret("")
    org_id: str = ""
    scopes: str = DEFAULT_SCOPES
    access_token: Secret = Secret("")
    slack_bot_token: Secret = Secret("")
    slack_api_url: str = SLACK_API_URL
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: Secret = Secret("")
    smtp_starttls: bool = True
    smtp_from: str = "flowbot@localhost"
    db: str = "flowbot.db"
    rules: str = "rules.yaml"
    http_port: int | None = None
    http_host: str = "127.0.0.1"
    log_format: str = "text"
    templates: str | None = None

    def secrets(self) -> list[str]:
        """The secret values that are set, for redaction of any text that leaves us."""
        out = [getattr(self, f.name).get() for f in fields(self) if f.type == "Secret"]
        return [s for s in out if s]


# variable → (field, kind)
ENVIRONMENT: dict[str, tuple[str, str]] = {
    "FLOWBOT_API_URL": ("api_url", "url"),
    "FLOWBOT_IMS_URL": ("ims_url", "url"),
    "ADOBE_CLIENT_ID": ("client_id", "str"),
    "ADOBE_CLIENT_SECRET": ("client_secret", "secret"),
    "ADOBE_ORG_ID": ("org_id", "str"),
    "ADOBE_SCOPES": ("scopes", "str"),
    "ADOBE_ACCESS_TOKEN": ("access_token", "secret"),
    "SLACK_BOT_TOKEN": ("slack_bot_token", "secret"),
    "FLOWBOT_SLACK_API_URL": ("slack_api_url", "url"),
    "SMTP_HOST": ("smtp_host", "str"),
    "SMTP_PORT": ("smtp_port", "port"),
    "SMTP_USER": ("smtp_user", "str"),
    "SMTP_PASSWORD": ("smtp_password", "secret"),
    "SMTP_STARTTLS": ("smtp_starttls", "bool"),
    "SMTP_FROM": ("smtp_from", "str"),
    "FLOWBOT_DB": ("db", "str"),
    "FLOWBOT_RULES": ("rules", "str"),
    "FLOWBOT_HTTP_PORT": ("http_port", "port"),
    "FLOWBOT_HTTP_HOST": ("http_host", "str"),
    "FLOWBOT_LOG_FORMAT": ("log_format", "format"),
    "FLOWBOT_TEMPLATES": ("templates", "str"),
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read Settings from `environ` (default: os.environ). Empty values count as unset.

    Raises ConfigError naming the variable (never its value, which may be secret).
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    problems: list[str] = []
    for name, (attr, kind) in ENVIRONMENT.items():
        raw = env.get(name, "").strip()
        if not raw:
            continue
        try:
            values[attr] = _convert(raw, kind)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise ConfigError("bad environment: " + "; ".join(problems), problems)
    return Settings(**values)  # type: ignore[arg-type]


def _convert(raw: str, kind: str) -> object:
    if kind == "secret":
        return Secret(raw)
    if kind == "url":
        if not raw.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return raw
    if kind == "port":
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise ValueError("must be a port number from 1 to 65535")
        return int(raw)
    if kind == "bool":
        lowered = raw.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError("must be true or false")
    if kind == "format":
        if raw not in ("text", "json"):
            raise ValueError("must be 'text' or 'json'")
        return raw
    return raw


def redact(text: str, secrets: list[str]) -> str:
    """Replace every secret value inside `text` with '***'."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
