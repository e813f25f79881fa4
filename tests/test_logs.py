import io
import json
import logging

from flowbot.logs import setup_logging


def test_secrets_are_redacted_in_messages_and_tracebacks_in_both_formats():
    for fmt in ("text", "json"):
        out = io.StringIO()
        setup_logging(fmt, ["s3cr3t-token"], stream=out)
        log = logging.getLogger("flowbot.test")
        log.warning("calling with %s", "s3cr3t-token")
        try:
            raise RuntimeError("token s3cr3t-token refused")
        except RuntimeError:
            log.exception("it failed")
        text = out.getvalue()
        assert "s3cr3t-token" not in text and text.count("***") >= 2
        assert "RuntimeError" in text  # the traceback is still there
        if fmt == "json":
            lines = [json.loads(line) for line in text.splitlines()]
            assert lines[1]["level"] == "error" and "traceback" in lines[1]
