# syntax=docker/dockerfile:1
# flowbot as a container: `flowbot run` with /healthz, /readyz and /metrics on :9108.
#
#   docker build -t flowbot .
#   docker run -d --name flowbot -v flowbot-data:/data \
#     -v "$PWD/rules.yaml:/etc/flowbot/rules.yaml:ro" \
#     -e ADOBE_CLIENT_ID -e ADOBE_CLIENT_SECRET -e ADOBE_ORG_ID -e SLACK_BOT_TOKEN \
#     -p 9108:9108 flowbot
#
# Rules live at /etc/flowbot/rules.yaml (mount the file or the directory); template
# overrides go beside it (`templates: templates` in rules.yaml means /etc/flowbot/templates).
# The default templates ship inside the package. The database is /data/flowbot.db.

# ---- build: a wheel of flowbot and of every dependency
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY flowbot ./flowbot
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- run: the wheels installed, nothing else
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLOWBOT_DB=/data/flowbot.db \
    FLOWBOT_RULES=/etc/flowbot/rules.yaml \
    FLOWBOT_HTTP_HOST=0.0.0.0 \
    FLOWBOT_HTTP_PORT=9108
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/flowbot-*.whl \
    && python -c "from flowbot.render import DEFAULT_TEMPLATES as t; assert (t / 'slack').is_dir(), t" \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin flowbot \
    && mkdir -p /data /etc/flowbot \
    && chown flowbot:flowbot /data
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('FLOWBOT_HTTP_PORT', '9108') + '/healthz', timeout=4)"]
ENTRYPOINT ["flowbot"]
CMD ["run"]
