"""The environment → Settings. Secrets are wrapped so that no repr, log line or error
shows them; `Settings.secrets()` lists their values for the redaction filter."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from urllib.parse import quote, quote_plus, unquote, urlsplit

from flowbot.errors import ConfigError

ADOBE_API_URL = "https://platform.adobe.io/data/foundation/flowservice"
ADOBE_IMS_URL = "https://ims-na1.adobelogin.com/ims/token/v3"
ADOBE_EXPORT_URL = "https://platform.adobe.io/data/foundation/export"
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
    export_url: str = ADOBE_EXPORT_URL
    client_id: str = ""
    client_secret: Secret = Secret("")
    org_id: str = ""
    scopes: str = DEFAULT_SCOPES
    access_token: Secret = Secret("")
    slack_bot_token: Secret = Secret("")
    slack_api_url: str = SLACK_API_URL
    slack_app_token: Secret = Secret("")
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
    ui_token: Secret = Secret("")

    def secrets(self) -> list[str]:
        """The secret values that are set, for redaction of any text that leaves us:
        the Secret fields, passwords written into a URL (`user:password@host`), and the
        `id:secret` pairs that HTTP basic authentication would base64-encode."""
        out = [getattr(self, f.name).get() for f in fields(self) if f.type == "Secret"]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_url") and isinstance(value, str):
                out.append(_url_password(value))
        pairs = ((self.client_id, self.client_secret), (self.smtp_user, self.smtp_password))
        out += [f"{user}:{secret.get()}" for user, secret in pairs if user and secret]
        return [s for s in dict.fromkeys(out) if s]

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and f.name.endswith("_url"):
                value = strip_userinfo(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"


# variable → (field, kind)
ENVIRONMENT: dict[str, tuple[str, str]] = {
    "FLOWBOT_API_URL": ("api_url", "url"),
    "FLOWBOT_IMS_URL": ("ims_url", "url"),
    "FLOWBOT_EXPORT_URL": ("export_url", "url"),
    "ADOBE_CLIENT_ID": ("client_id", "str"),
    "ADOBE_CLIENT_SECRET": ("client_secret", "secret"),
    "ADOBE_ORG_ID": ("org_id", "str"),
    "ADOBE_SCOPES": ("scopes", "str"),
    "ADOBE_ACCESS_TOKEN": ("access_token", "secret"),
    "SLACK_BOT_TOKEN": ("slack_bot_token", "secret"),
    "FLOWBOT_SLACK_API_URL": ("slack_api_url", "url"),
    "SLACK_APP_TOKEN": ("slack_app_token", "secret"),
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
    "FLOWBOT_UI_TOKEN": ("ui_token", "secret"),
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
    # Each value has its field's type (ENVIRONMENT names the converter per field); the
    # mapping from names to types is data here, which mypy cannot follow.
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


# user:password@ (or user@) right after a URL scheme
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s]*@")
MIN_SECRET = 4  # shorter values are not redacted (they would blank out ordinary words)
MIN_BASE64 = 8  # base64 fragments shorter than this are not searched for


def strip_userinfo(text: str) -> str:
    """`scheme://user:password@host` → `scheme://***@host`, anywhere in `text`."""
    return _USERINFO.sub(r"\1***@", text)


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every secret inside `text` with '***', in the encodings it travels in:
    as it is, URL- and form-encoded, JSON-escaped, and base64 (alone, or inside
    `id:secret` at any offset); and any `user:password@` in a URL."""
    text = strip_userinfo(text)
    pattern = _pattern(tuple(s for s in secrets if s and len(s) >= MIN_SECRET))
    return pattern.sub("***", text) if pattern is not None else text


@lru_cache(maxsize=32)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    forms: set[str] = set()
    for secret in secrets:
        forms |= secret_forms(secret)
    if not forms:
        return None
    ordered = sorted(forms, key=len, reverse=True)  # the longest form wins
    return re.compile("|".join(_any_hex_case(re.escape(form)) for form in ordered))


def _any_hex_case(pattern: str) -> str:
    """Let each `%2F` of an escaped pattern match `%2f` too (encoders differ)."""
    return re.sub(
        r"%([0-9A-Fa-f])([0-9A-Fa-f])",
        lambda m: "%" + "".join(f"[{c.upper()}{c.lower()}]" for c in m.groups()),
        pattern,
    )


def secret_forms(secret: str) -> set[str]:
    """The spellings of `secret` that a log line, an error body or a database row may
    carry."""
    forms = {secret}
    forms |= {quote(secret, safe=""), quote(secret), quote_plus(secret)}
    for escaped in (json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]):
        forms |= {escaped, escaped.replace("/", "\\/")}
    if unquote(secret) != secret:  # a value that looks encoded: its decoded form too
        forms.add(unquote(secret))
    forms |= _base64_cores(secret.encode())
    return {form for form in forms if len(form) >= MIN_SECRET}


def _base64_cores(raw: bytes) -> set[str]:
    """The part of base64(prefix + raw + suffix) that depends on `raw` alone, for each
    of the three alignments a prefix can give it (standard and URL-safe alphabets)."""
    cores = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        start = (8 * offset + 5) // 6  # the first character with no bit of the prefix
        end = 8 * (offset + len(raw)) // 6  # the characters with no bit of a suffix
        core = encoded[start:end]
        if len(core) >= MIN_BASE64:
            cores |= {core, core.replace("+", "-").replace("/", "_")}
    whole = base64.b64encode(raw).decode()
    cores |= {whole, whole.rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    return cores


def _url_password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""
