"""Text and links from outside (the Flow Service) made safe to show, for every channel.

- `one_line` neutralises control characters: line breaks (CR, LF, CRLF, the Unicode
  line and paragraph separators, NEL, vertical tab, form feed) become " ⏎ ", so API text
  can never start a line of its own (no fake `Bcc:` line in an email body, no Slack header
  made of an error message); tabs become spaces; bidi overrides and isolates are removed;
  any other control character and any lone surrogate becomes U+FFFD.
- `cut` shortens text without splitting a character: it counts UTF-16 units (as Slack
  does) and never separates a combining mark, a variation selector or a ZWJ sequence from
  its base.
- `is_trusted_url` decides whether a diagnostic URL may be shown as a link;
  `is_configured_link` whether a URL from rules.yaml (a runbook) may.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import urlsplit

NEWLINE_MARK = " ⏎ "
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]")
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
_OTHER_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f\ud800-\udfff]")

# Diagnostic links are links only on these hosts (and their subdomains), over https:
# platform.adobe.io serves the Data Access API that the Flow Service links to,
# experience.adobe.com the AEP UI, *.adobelogin.com IMS. Anything else is shown as text.
ADOBE_DOMAINS = ("adobe.io", "adobe.com", "adobelogin.com")
_HOST = re.compile(r"[a-z0-9.-]+")


def one_line(text: str) -> str:
    """`text` with every control character neutralised (see the module docstring)."""
    if text.isprintable():
        return text
    text = _LINE_BREAKS.sub(NEWLINE_MARK, text).replace("\t", " ")
    text = _BIDI.sub("", text)
    return _OTHER_CONTROLS.sub("\ufffd", text)


def _units(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def width(text: str) -> int:
    """Length in UTF-16 units, as Slack counts its limits."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _joins_previous(text: str, i: int) -> bool:
    """Whether text[i] belongs to the character before it (so a cut must not fall at i)."""
    char = text[i]
    if unicodedata.category(char) in ("Mn", "Me", "Mc"):
        return True
    if char in "\u200d\ufe0e\ufe0f" or 0x1F3FB <= ord(char) <= 0x1F3FF:  # ZWJ, VS, skin tone
        return True
    if 0xE0020 <= ord(char) <= 0xE007F:  # emoji tag characters
        return True
    return text[i - 1] == "\u200d"


def cut(text: str, limit: int, marker: str = "…") -> str:
    """`text` in at most `limit` UTF-16 units, cut between characters with `marker`
    appended when anything was dropped."""
    if len(text) * 2 <= limit or width(text) <= limit:
        return text
    budget = limit - width(marker)
    end = used = 0
    while end < len(text) and used + _units(text[end]) <= budget:
        used += _units(text[end])
        end += 1
    while 0 < end < len(text) and _joins_previous(text, end):
        end -= 1
    return text[:end] + marker


def _parts(url: str) -> tuple[str, str, int | None] | None:
    """Scheme, host and port of a URL fit to be a link, or None: no credentials, spaces,
    backslashes, quotes or unusual host characters."""
    if not url or not url.isprintable() or any(c in url for c in " \\\"'<>`|"):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if "@" in parts.netloc or not _HOST.fullmatch(host):
        return None
    return parts.scheme, host, port


def is_trusted_url(url: str, origins: Iterable[str] = ()) -> bool:
    """Whether `url` may be a clickable link: https on an Adobe host (see
    ADOBE_DOMAINS), or on exactly one of `origins` (scheme, host and port of the
    configured API and export URLs). URLs with credentials, spaces, backslashes or
    unusual host characters are never trusted."""
    found = _parts(url)
    if found is None:
        return False
    scheme, host, port = found
    for origin in origins:
        try:
            allowed = urlsplit(origin)
            if (scheme, host, port) == (allowed.scheme, allowed.hostname, allowed.port):
                return True
        except ValueError:
            continue
    if scheme != "https" or port not in (None, 443):
        return False
    return any(host == d or host.endswith("." + d) for d in ADOBE_DOMAINS)


def is_configured_link(url: str) -> bool:
    """Whether a URL from rules.yaml (a rule's `runbook`) may be a link: http or https
    on any host, with the same shape checks as `is_trusted_url`."""
    found = _parts(url)
    return found is not None and found[0] in ("http", "https")
