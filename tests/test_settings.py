import pytest

from flowbot.errors import ConfigError
from flowbot.settings import Secret, Settings, load_settings, redact


def test_defaults_match_the_design():
    s = load_settings({})
    assert s.api_url == "https://platform.adobe.io/data/foundation/flowservice"
    assert s.ims_url == "https://ims-na1.adobelogin.com/ims/token/v3"
    assert s.slack_api_url == "https://slack.com/api/"
    assert (s.smtp_port, s.smtp_starttls, s.db, s.rules) == (587, True, "flowbot.db", "rules.yaml")
    assert s.http_port is None and s.log_format == "text"


def test_secrets_never_show_in_repr():
    s = load_settings(
        {
            "ADOBE_CLIENT_SECRET": "s3cr3t-value",
            "SLACK_BOT_TOKEN": "xoxb-123456",
            "SMTP_PASSWORD": "pw-9876",
        }
    )
    text = repr(s) + str(s)
    for value in ("s3cr3t-value", "xoxb-123456", "pw-9876"):
        assert value not in text
    assert sorted(s.secrets()) == sorted(["s3cr3t-value", "xoxb-123456", "pw-9876"])
    assert s.client_secret.get() == "s3cr3t-value"


def test_bad_values_name_the_variable_not_the_value():
    with pytest.raises(ConfigError) as err:
        load_settings(
            {"SMTP_PORT": "eighty", "SMTP_STARTTLS": "maybe", "FLOWBOT_LOG_FORMAT": "xml"}
        )
    text = str(err.value)
    assert "SMTP_PORT" in text and "SMTP_STARTTLS" in text and "FLOWBOT_LOG_FORMAT" in text
    assert len(err.value.problems) == 3


def test_redact_replaces_every_secret():
    assert redact("token xoxb-123456 and xoxb-123456", ["xoxb-123456"]) == "token *** and ***"
    assert Settings().secrets() == []
    assert not Secret("")
