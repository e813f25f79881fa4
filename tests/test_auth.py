"""flowbot.aep.auth: IMS tokens against a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from conftest import Clock

from flowbot.aep.auth import (
    CredentialsRefusedError,
    PlatformAuth,
    TokenProvider,
    client_from_settings,
    tokens_from_settings,
)
from flowbot.aep.client import Limits
from flowbot.aep.stats import ClientStats, Counters
from flowbot.errors import ConfigError, FlowAPIError
from flowbot.settings import Secret, Settings

SECRET = "s3cr3t-value-never-shown"
Answer = tuple[int, dict[str, object] | str]


class IMS:
    """A token endpoint that records each form it gets and answers from a queue."""

    def __init__(self) -> None:
        self.forms: list[dict[str, str]] = []
        self.answers: list[Answer] = []
        self.issued = 0
        ims = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(length).decode())
                ims.forms.append({k: v[0] for k, v in form.items()})
                status, body = ims.answers.pop(0) if ims.answers else ims.token()
                data = body if isinstance(body, str) else json.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ims/token/v3"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def token(self) -> Answer:
        self.issued += 1
        return 200, {
            "access_token": f"tok-{self.issued}",
            "token_type": "bearer",
            "expires_in": 3600,
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def ims() -> Iterator[IMS]:
    server = IMS()
    yield server
    server.close()


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2024, 5, 1, tzinfo=UTC))


@pytest.fixture
def provider(ims: IMS, clock: Clock) -> Iterator[TokenProvider]:
    tokens = TokenProvider(
        ims_url=ims.url, client_id="cid", client_secret=Secret(SECRET), scopes="openid", now=clock
    )
    yield tokens
    tokens.close()


def test_client_credentials_are_posted_as_a_form_and_the_token_is_cached(ims, provider):
    assert provider.token() == "tok-1"
    assert provider.token() == "tok-1"
    assert ims.forms == [
        {
            "grant_type": "client_credentials",
            "client_id": "cid",
            "client_secret": SECRET,
            "scope": "openid",
        }
    ]
    assert provider.refreshes == 1 and provider.can_refresh


def test_token_is_refreshed_a_safety_margin_before_it_expires(ims, provider, clock):
    assert provider.token() == "tok-1"
    clock.at += timedelta(seconds=3600 - 300 - 1)  # margin: 5 minutes (a tenth is 6)
    assert provider.token() == "tok-1"
    clock.at += timedelta(seconds=2)
    assert provider.token() == "tok-2"
    assert provider.refreshes == 2


def test_invalidate_fetches_a_new_token_once(ims, provider):
    provider.token()
    provider.invalidate()
    assert provider.token() == "tok-2"
    assert provider.token() == "tok-2"
    assert len(ims.forms) == 2


def test_static_token_never_calls_ims(ims, clock):
    tokens = TokenProvider(static_token=Secret("ready-token"), now=clock)
    clock.at += timedelta(days=30)
    tokens.invalidate()
    assert tokens.token() == "ready-token"
    assert not tokens.can_refresh and tokens.refreshes == 0
    assert ims.forms == []


def test_expires_in_milliseconds_from_the_old_jwt_exchange(ims, provider, clock):
    ims.answers.append((200, {"access_token": "jwt", "expires_in": 86399992}))
    assert provider.token() == "jwt"
    clock.at += timedelta(hours=23)
    assert provider.token() == "jwt"
    clock.at += timedelta(minutes=56)
    assert provider.token() == "tok-1"


@pytest.mark.parametrize(
    ("status", "body", "retryable", "text"),
    [
        (400, {"error": "invalid_client", "error_description": f"bad secret {SECRET}"}, False,
         "invalid_client"),
        (401, "not json", False, "401"),
        (503, {"error": "unavailable"}, True, "503"),
        (200, {"token_type": "bearer"}, False, "no access_token"),
    ],
)  # fmt: skip
def test_ims_errors_name_the_url_never_the_secret(ims, provider, status, body, retryable, text):
    ims.answers.append((status, body))
    with pytest.raises(FlowAPIError) as caught:
        provider.token()
    message = str(caught.value)
    assert ims.url in message and text in message
    assert SECRET not in message and SECRET not in repr(caught.value.args)
    assert caught.value.retryable is retryable


def test_unreachable_ims_is_a_retryable_error_naming_the_url(clock):
    tokens = TokenProvider(
        ims_url="http://127.0.0.1:9/ims/token/v3", client_id="c", client_secret=SECRET, now=clock
    )
    with pytest.raises(FlowAPIError, match=r"127\.0\.0\.1:9/ims/token/v3") as caught:
        tokens.token()
    assert caught.value.retryable and SECRET not in str(caught.value)
    tokens.close()


@pytest.mark.parametrize(
    "settings",
    [
        Settings(),
        Settings(client_id="c", client_secret=Secret(SECRET)),  # no org
        Settings(client_id="c", org_id="o@AdobeOrg"),  # no secret
    ],
)
def test_missing_credentials_are_a_config_error(settings):
    with pytest.raises(ConfigError, match="ADOBE_ACCESS_TOKEN") as caught:
        client_from_settings(settings, "prod")
    assert SECRET not in str(caught.value)


def test_settings_choose_static_token_or_client_credentials(ims):
    static = tokens_from_settings(Settings(access_token=Secret("ready")))
    assert static.token() == "ready" and not static.can_refresh
    static.close()
    settings = Settings(
        ims_url=ims.url, client_id="cid", client_secret=Secret(SECRET), org_id="o@AdobeOrg"
    )
    client = client_from_settings(settings, "dev", limits=Limits(timeout=5))
    try:
        assert client.sandbox == "dev" and client.api_key == "cid" and client.org_id == "o@AdobeOrg"
        assert client.tokens.token() == "tok-1"
        assert ims.forms[0]["scope"] == settings.scopes
    finally:
        client.close()


def test_a_clock_is_injected_not_slept_through(provider: TokenProvider, clock: Callable):
    # A day passes in no time: the provider asks IMS again, once.
    provider.token()
    clock.at += timedelta(days=1)
    provider.token()
    provider.token()
    assert provider.refreshes == 2


# ---------------------------------------------------------------- PlatformAuth


def test_platform_headers_go_only_to_allowed_origins():
    auth = PlatformAuth(
        TokenProvider(static_token="tok"), "cid", "o@AdobeOrg",
        ["https://Platform.adobe.io/data/foundation/flowservice", "https://export.example:8443/x"],
    )  # fmt: skip
    headers = auth.headers("https://platform.adobe.io:443/data/foundation/flowservice/runs", "dev")
    assert headers == {
        "Authorization": "Bearer tok",
        "x-api-key": "cid",
        "x-gw-ims-org-id": "o@AdobeOrg",
        "x-sandbox-name": "dev",
        "Accept": "application/json",
    }
    assert auth.allows("https://export.example:8443/other/path")
    for elsewhere in (
        "http://platform.adobe.io/data",  # another scheme
        "https://platform.adobe.io:8443/data",  # another port
        "https://export.example/x",  # the export host on the default port
        "https://evil.example/data/foundation/flowservice/runs",
        "not a url",
    ):
        assert not auth.allows(elsewhere)
        with pytest.raises(CredentialsRefusedError):
            auth.headers(elsewhere, "dev")


def test_a_refused_origin_never_asks_ims_for_a_token(ims):
    tokens = TokenProvider(ims_url=ims.url, client_id="cid", client_secret=SECRET)
    auth = PlatformAuth(tokens, "cid", "org", ["https://platform.adobe.io"])
    with pytest.raises(CredentialsRefusedError):
        auth.headers("https://evil.example/runs", "prod")
    assert ims.forms == [] and tokens.refreshes == 0
    tokens.close()


def test_a_401_renews_the_token_once_per_request(ims):
    tokens = TokenProvider(ims_url=ims.url, client_id="cid", client_secret=SECRET)
    auth = PlatformAuth(tokens, "cid", "org", ["https://platform.adobe.io"])
    assert auth.headers("https://platform.adobe.io/runs", "prod")["Authorization"] == "Bearer tok-1"
    assert not auth.renews_after(403, renewed=False)
    assert auth.renews_after(401, renewed=False)
    assert not auth.renews_after(401, renewed=True)
    assert auth.headers("https://platform.adobe.io/runs", "prod")["Authorization"] == "Bearer tok-2"
    assert tokens.refreshes == 2
    tokens.close()


def test_a_static_token_is_never_renewed():
    auth = PlatformAuth(TokenProvider(static_token="tok"), "cid", "org", ["https://a.example"])
    assert not auth.renews_after(401, renewed=False)
    assert auth.tokens.token() == "tok"


# ---------------------------------------------------------------- counting


def test_counters_snapshot_is_frozen_and_sums_every_answer():
    counters = Counters()
    for status in (200, 200, 429, 503):
        counters.answered(status)
    counters.no_answer()
    counters.retried()
    counters.paged()
    stats = counters.snapshot(token_refreshes=3)
    assert stats == ClientStats({200: 2, 429: 1, 503: 1, "error": 1}, 1, 1, 3)
    assert stats.requests == 5
    counters.answered(200)
    assert stats.by_status[200] == 2 and counters.snapshot().requests == 6
