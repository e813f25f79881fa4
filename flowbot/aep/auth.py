"""Adobe IMS access tokens: a ready token, or OAuth server-to-server client credentials.

Tokens live about 24 hours and come with no refresh token, so the provider asks IMS for
a new one a little before the old one expires, and once more when the Flow Service says
401 (`invalidate()`). Errors name the IMS URL (without user:password@ or query), never
the client secret or a token, in any encoding. The form goes to the IMS URL only
(redirects are not followed), and one exchange is bounded in time and size.

`PlatformAuth` is the Flow Service client's auth layer: the four Platform headers, given
only for URLs on the allowed origins, and the one token refresh a 401 earns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import requests

from flowbot.aep.exchange import (
    ExchangeError,
    decode_json,
    exchange,
    new_session,
    origin,
    safe_url,
)
from flowbot.errors import ConfigError, FlowAPIError
from flowbot.settings import Secret, Settings, redact

if TYPE_CHECKING:
    from flowbot.aep.client import FlowClient, Limits
    from flowbot.aep.retry import Clocks, RetryPolicy

log = logging.getLogger("flowbot.aep")

MAX_MARGIN = timedelta(minutes=5)
DEFAULT_LIFETIME = timedelta(hours=24)
MAX_LIFETIME = timedelta(days=2)  # a longer expires_in is not believed
IMS_TIMEOUT = 30.0  # seconds for one whole token exchange, body included
MAX_IMS_BYTES = 1 * 2**20  # a token answer is a few kB; more is refused


def utc_now() -> datetime:
    return datetime.now(UTC)


class TokenProvider:
    """Gives the bearer token for Platform requests.

    Either `static_token` (used as it is, never refreshed) or client credentials that
    are POSTed as a form to `ims_url`. The token is cached until `margin` before it
    expires (by default a tenth of its lifetime, at most five minutes); `refreshes`
    counts the tokens fetched from IMS.
    """

    def __init__(
        self,
        *,
        static_token: str | Secret | None = None,
        ims_url: str = "",
        client_id: str = "",
        client_secret: str | Secret = "",
        scopes: str = "",
        session: requests.Session | None = None,
        timeout: float = IMS_TIMEOUT,
        now: Callable[[], datetime] = utc_now,
        margin: timedelta | None = None,
    ) -> None:
        self._static = _reveal(static_token)
        self._secret = _reveal(client_secret)
        if not self._static and not (ims_url and client_id and self._secret):
            raise ConfigError(
                "no Adobe credentials: set ADOBE_ACCESS_TOKEN, or ADOBE_CLIENT_ID, "
                "ADOBE_CLIENT_SECRET and ADOBE_ORG_ID"
            )
        self.ims_url = ims_url
        self.client_id = client_id
        self.scopes = scopes
        self.timeout = timeout
        self.refreshes = 0
        self._session = session or new_session()
        self._owns_session = session is None
        self._now = now
        self._margin = margin
        self._token = ""
        self._refresh_at: datetime | None = None
        self._lock = threading.Lock()

    @property
    def can_refresh(self) -> bool:
        """True for client credentials: a new token can be asked for after a 401."""
        return not self._static

    def secrets(self) -> list[str]:
        """Values that must never appear in logs or errors (for redaction)."""
        pair = f"{self.client_id}:{self._secret}" if self.client_id and self._secret else ""
        return [s for s in (self._static, self._secret, self._token, pair) if s]

    @property
    def ims_where(self) -> str:
        """The IMS URL as errors show it: no user:password@, no query."""
        return safe_url(self.ims_url)

    def token(self) -> str:
        """The current access token, fetched from IMS when there is none or it is
        about to expire. Raises FlowAPIError (retryable for 5xx, 429 and network
        errors) naming the IMS URL."""
        if self._static:
            return self._static
        with self._lock:
            if not self._token or self._refresh_at is None or self._now() >= self._refresh_at:
                self._fetch()
            return self._token

    def invalidate(self) -> None:
        """Forget the cached token, so the next `token()` asks IMS again (after a 401)."""
        with self._lock:
            self._token = ""
            self._refresh_at = None

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def _fetch(self) -> None:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._secret,
            "scope": self.scopes,
        }
        try:
            answer = exchange(
                self._session, "POST", self.ims_url, data=form,
                seconds=self.timeout, max_bytes=MAX_IMS_BYTES,
            )  # fmt: skip
        except ExchangeError as exc:
            raise FlowAPIError(
                f"IMS token request to {self.ims_where} failed: {exc.problem}",
                retryable=exc.retryable,
            ) from None
        if answer.status != 200:
            detail = redact(_ims_error(answer), self.secrets())
            raise FlowAPIError(
                f"IMS token request to {self.ims_where} answered {answer.status}: {detail}",
                status=answer.status,
                retryable=answer.status == 429 or answer.status >= 500,
            )
        try:
            body = decode_json(answer.body)
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise FlowAPIError(f"IMS token response from {self.ims_where} has no access_token")
        lifetime = _lifetime(body.get("expires_in") if isinstance(body, dict) else None)
        margin = self._margin if self._margin is not None else min(MAX_MARGIN, lifetime / 10)
        self._token = token
        self._refresh_at = self._now() + lifetime - margin
        self.refreshes += 1
        log.info("fetched an IMS access token (valid %s)", lifetime)


class CredentialsRefusedError(ValueError):
    """A URL that the Platform credentials must not be sent to."""


class PlatformAuth:
    """Signs Flow Service requests: `Authorization: Bearer`, `x-api-key`,
    `x-gw-ims-org-id` and `x-sandbox-name`, for URLs on `origins` only (compared as
    scheme, host and port). `renews_after()` decides the one token refresh a 401 earns."""

    def __init__(
        self, tokens: TokenProvider, api_key: str, org_id: str, origins: Iterable[str]
    ) -> None:
        self.tokens = tokens
        self.api_key = api_key
        self.org_id = org_id
        self.origins = frozenset(o for o in map(origin, origins) if o)

    def allows(self, url: str) -> bool:
        """Whether credentials may go to `url`."""
        return origin(url) in self.origins

    def headers(self, url: str, sandbox: str) -> dict[str, str]:
        """The headers of a request to `url` in `sandbox`. Raises CredentialsRefusedError
        when `url` is not on an allowed origin, and FlowAPIError when IMS gives no token."""
        if not self.allows(url):
            raise CredentialsRefusedError("points to another origin than the API's")
        return {
            "Authorization": f"Bearer {self.tokens.token()}",
            "x-api-key": self.api_key,
            "x-gw-ims-org-id": self.org_id,
            "x-sandbox-name": sandbox,
            "Accept": "application/json",
        }

    def renews_after(self, status: int, *, renewed: bool) -> bool:
        """After an answer with `status`: whether to drop the token and send the request
        again with a new one. Only a 401, only once per request (`renewed` says whether
        this request had its refresh already), only for tokens IMS can renew."""
        if status != 401 or renewed or not self.tokens.can_refresh:
            return False
        self.tokens.invalidate()
        return True

    def secrets(self) -> list[str]:
        return self.tokens.secrets()


def _reveal(value: str | Secret | None) -> str:
    if isinstance(value, Secret):
        return value.get()
    return value or ""


def _lifetime(expires_in: Any) -> timedelta:
    """IMS v3 says seconds; the old JWT exchange said milliseconds (86399992)."""
    if isinstance(expires_in, str) and expires_in.strip().isdigit():
        expires_in = int(expires_in)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        return DEFAULT_LIFETIME
    if not 0 < expires_in < 10**12:  # also refuses NaN; 10**12 ms is 31 years
        return DEFAULT_LIFETIME
    seconds = expires_in / 1000 if expires_in > 10 * 86400 else expires_in
    return min(timedelta(seconds=seconds), MAX_LIFETIME)


def _ims_error(answer: Any) -> str:
    """IMS's error code and description, or the HTTP reason; one printable line."""
    reason = "".join(ch for ch in answer.reason[:80] if ch.isprintable()) or "no details"
    try:
        body = decode_json(answer.body)
    except ValueError:
        return reason
    if not isinstance(body, dict):
        return reason
    parts = [str(body[k])[:300] for k in ("error", "error_description", "message") if body.get(k)]
    text = (": ".join(parts) or reason)[:300]
    return "".join(ch if ch.isprintable() else " " for ch in text)


def tokens_from_settings(settings: Settings, **kw: Any) -> TokenProvider:
    """A TokenProvider for the environment: ADOBE_ACCESS_TOKEN when set, otherwise the
    OAuth client credentials. Raises ConfigError when neither is complete."""
    if settings.access_token:
        return TokenProvider(static_token=settings.access_token, **kw)
    if not (settings.client_id and settings.client_secret and settings.org_id):
        raise ConfigError(
            "no Adobe credentials: set ADOBE_ACCESS_TOKEN, or ADOBE_CLIENT_ID, "
            "ADOBE_CLIENT_SECRET and ADOBE_ORG_ID"
        )
    return TokenProvider(
        ims_url=settings.ims_url,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        scopes=settings.scopes,
        **kw,
    )


def client_from_settings(
    settings: Settings,
    sandbox: str,
    *,
    limits: Limits | None = None,
    retry: RetryPolicy | None = None,
    clocks: Clocks | None = None,
    session: requests.Session | None = None,
    now: Callable[[], datetime] | None = None,
) -> FlowClient:
    """A FlowClient for `sandbox`, configured from the environment: credentials go to
    the API and the Data Access (export) origins. `limits`, `retry` and `clocks` go to
    the FlowClient (the IMS exchange shares `limits.timeout`); `now` goes to the
    TokenProvider. Raises ConfigError when credentials are missing."""
    from flowbot.aep.client import FlowClient, Limits

    limits = limits or Limits()
    given = session
    session = given or new_session()
    token_kw = {"now": now} if now is not None else {}
    tokens = tokens_from_settings(settings, session=session, timeout=limits.timeout, **token_kw)
    return FlowClient(
        settings.api_url,
        tokens,
        settings.client_id,
        settings.org_id,
        sandbox,
        limits=limits,
        retry=retry,
        clocks=clocks,
        session=session,
        owns_session=given is None,
        other_origins=(settings.export_url,),
    )
