"""`flowbot run`: the composition root and the scheduler (the only module importing
APScheduler).

    serve(settings, ruleset)
      ├── lock        <db>.lock (flock, dblock.py): one sender per database
      ├── deps        pipeline.build_deps: store, clients, notifiers
      ├── scheduler   BlockingScheduler (UTC): one `cycle:<sandbox>` job per sandbox
      │               every poll_every, and a `watch` job polling the mtimes of the
      │               rules file and every template folder (validate.py)
      ├── health      /healthz /readyz /metrics when FLOWBOT_HTTP_PORT is set
      └── signals     SIGTERM/SIGINT: finish the cycle in flight (at most stop_timeout,
                      then exit 0 without it); SIGHUP: reload (storms coalesce)

A cycle is `pipeline.run_cycle` then `pipeline.send`: the very code of `check --once`.
Cycles hold one lock (the SQLite connection is shared, and two sandboxes must never
drain the outbox at once), so they never overlap; a job still running when it is due
again is skipped (`max_instances=1`), and missed runs after a suspended host or a clock
jump coalesce into one catch-up cycle. A cycle never raises: a failing stage fails that
cycle in one line, and the outbox is drained all the same. Before each cycle the
database file is checked to still be the one opened; once deleted or replaced, cycles
stop and /readyz says why.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from flowbot import pipeline, routing
from flowbot.daemon_checks import (
    database_change,
    describe,
    fingerprint,
    identity,
    rejection_key,
)
from flowbot.dblock import AlreadyRunning, acquire_lock
from flowbot.errors import ConfigError, FlowbotError
from flowbot.health import HealthServer, readiness
from flowbot.metrics import Metrics
from flowbot.outbox import Delivery
from flowbot.pipeline import CycleReport, Deps
from flowbot.settings import Settings
from flowbot.summary import summary_line
from flowbot.validate import check_templates, template_folders, validate

if TYPE_CHECKING:
    from flowbot.aep.client import FlowClient
    from flowbot.rules import RuleSet

__all__ = ["AlreadyRunning", "Daemon", "acquire_lock", "job_options", "serve"]

log = logging.getLogger("flowbot.daemon")

STOP_TIMEOUT = 30.0  # seconds a stop waits for the cycle in flight
WATCH_EVERY = 2.0  # seconds between looks at the rules file and templates
HEARTBEAT_TIMEOUT = 5.0


# ------------------------------------------------------------------ deciding


def job_options(poll_every: timedelta, now: datetime) -> dict[str, Any]:
    """APScheduler options of a sandbox's cycle job: start now, every `poll_every` with
    a little jitter; never two at once; after a suspend or a clock jump, the missed
    runs coalesce into one, which the grace time lets through."""
    seconds = poll_every.total_seconds()
    jitter = min(seconds * 0.1, 30.0)
    return {
        "trigger": IntervalTrigger(seconds=seconds, jitter=jitter, timezone=UTC),
        "coalesce": True,
        "max_instances": 1,
        "misfire_grace_time": max(1, int(seconds + jitter) + 1),
        "next_run_time": now,
    }


# ------------------------------------------------------------------ talking to the world


def ping(url: str, timeout: float = HEARTBEAT_TIMEOUT) -> None:
    """GET the heartbeat URL; failures are logged (host only), never raised."""
    host = urlsplit(url).netloc.rsplit("@", 1)[-1] or url[:20]
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            answer.read(1024)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        log.warning("heartbeat to %s failed: %s", host, str(reason).replace(url, host))


def _stats(client: FlowClient | None) -> tuple[dict[int | str, int], int]:
    stats = getattr(client, "stats", None)
    if stats is None:
        return {}, 0
    return dict(stats.by_status), int(stats.token_refreshes)


# ------------------------------------------------------------------ the daemon


class Daemon:
    """Runs cycles on a scheduler, reloads rules, and keeps the metrics."""

    def __init__(
        self,
        settings: Settings,
        ruleset: RuleSet,
        deps: Deps,
        *,
        scheduler: BaseScheduler | None = None,
        watch_every: float = WATCH_EVERY,
        ping_url: Callable[[str], None] = ping,
    ) -> None:
        self.settings = settings
        self.deps = deps
        self.scheduler = scheduler or BlockingScheduler(timezone=UTC)
        self.watch_every = watch_every
        self.ping_url = ping_url
        self.metrics = Metrics()
        self.last_ok: dict[str, datetime] = {}
        self.stopping = False
        self.in_flight: str | None = None  # the sandbox whose cycle runs now
        self.database_problem: str | None = None
        self._db_identity = identity(settings.db)
        self._cycle_lock = threading.Lock()  # one cycle (and one outbox drain) at a time
        self._reload_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._reload_queued = False
        self._rejected: str | None = None  # key of the last rejected change announced
        self._seen = fingerprint(self._watched(ruleset))

    @property
    def ruleset(self) -> RuleSet:
        return self.deps.ruleset

    # -------------------------------------------------------------- jobs

    def schedule(self) -> None:
        """(Re)create one cycle job per sandbox, starting now, and the watch job."""
        now = datetime.now(UTC)
        wanted = {f"cycle:{s}" for s in self.ruleset.sandboxes}
        for job in self.scheduler.get_jobs():
            if job.id.startswith("cycle:") and job.id not in wanted:
                job.remove()
        for sandbox in self.ruleset.sandboxes:
            self.scheduler.add_job(
                self.cycle,
                args=[sandbox],
                id=f"cycle:{sandbox}",
                name=f"cycle {sandbox}",
                replace_existing=True,
                **job_options(self.ruleset.poll_every, now),
            )
        self.schedule_digest()
        if self.scheduler.get_job("watch") is None:
            self.scheduler.add_job(
                self.watch,
                IntervalTrigger(seconds=self.watch_every, timezone=UTC),
                id="watch",
                name="watch rules",
                coalesce=True,
                max_instances=1,
            )

    def schedule_digest(self) -> None:
        """(Re)create the `digest` job at the digest cron's next firing (croniter
        decides when: APScheduler's day-of-week numbers are not cron's)."""
        from flowbot.digest import next_digest

        digest = self.ruleset.digest
        if digest is None:
            if self.scheduler.get_job("digest") is not None:
                self.scheduler.remove_job("digest")
            return
        at = next_digest(digest, self.deps.clock())
        self.scheduler.add_job(
            self.send_digest,
            DateTrigger(run_date=at, timezone=UTC),
            id="digest",
            name="digest",
            replace_existing=True,
            misfire_grace_time=3600,
        )

    def send_digest(self) -> int:
        """Queue the digest of the period that just ended, drain the outbox, and
        schedule the next digest. Returns the messages queued; never raises."""
        from flowbot.digest import digest_messages, digest_period
        from flowbot.report import gather

        queued = 0
        with self._cycle_lock:
            deps = self.deps
            digest = deps.ruleset.digest
            try:
                if digest is not None and not self.stopping:
                    since, until = digest_period(digest, deps.clock())
                    report = gather(deps.store, since, until, deps.ruleset.sandboxes)
                    messages = digest_messages(report, digest, deps.ruleset.channels)
                    with deps.store.transaction():
                        queued = deps.store.enqueue(messages, deps.clock())
                    log.info("digest %s → %s queued for %d channel(s)", since, until, queued)
                    pipeline.send(deps)
            except Exception as exc:  # a digest that fails must not end the daemon
                log.error("digest: not sent: %s", describe(exc, self.settings.secrets()))
        if not self.stopping:
            self.schedule_digest()
        return queued

    def cycle(self, sandbox: str) -> CycleReport | None:
        """One cycle of `sandbox` and a drain of the outbox; never raises.

        Any exception of a stage fails this cycle only: one line, counted, recorded
        (so the meta-alert follows after `monitoring.after`), and the outbox is drained
        all the same, so the meta-alert does not wait for the failing stage to heal."""
        with self._cycle_lock:
            if self.stopping:
                return None
            if self._database_lost(sandbox):
                return None
            deps = self.deps
            started = time.monotonic()
            self.in_flight = sandbox
            report: CycleReport | None = None
            client: FlowClient | None = None
            before: tuple[dict[int | str, int], int] = ({}, 0)
            try:
                client = deps.client_for(sandbox)
                before = _stats(client)
                report = pipeline.run_cycle(deps, sandbox)
            except Exception as exc:  # the one broad catch: no cycle may stop the daemon
                self._crashed(deps, sandbox, exc, started, "cycle")
            try:
                delivery = pipeline.send(deps)
            except Exception as exc:  # the send stage failing must not end the daemon
                if report is not None:
                    self._crashed(deps, sandbox, exc, started, "send")
                else:
                    log.error(
                        "cycle %s: the outbox could not be drained: %s",
                        sandbox,
                        describe(exc, self.settings.secrets()),
                    )
                    self.metrics.inc("flowbot_cycles_total", sandbox=sandbox, result="error")
                report = None
                delivery = Delivery()
            finally:
                self.in_flight = None
            if report is None:
                return None
            self._count(sandbox, client, before, report, delivery)
        log.info(summary_line(report, delivery))
        if report.ok:
            self.last_ok[sandbox] = deps.clock()
            if self.ruleset.monitoring.heartbeat_url:
                self.ping_url(self.ruleset.monitoring.heartbeat_url)
        return report

    def _count(
        self,
        sandbox: str,
        client: FlowClient | None,
        before: tuple[dict[int | str, int], int],
        report: CycleReport,
        delivery: Delivery,
    ) -> None:
        m = self.metrics
        m.inc("flowbot_cycles_total", sandbox=sandbox, result="ok" if report.ok else "failed")
        m.observe("flowbot_cycle_duration_seconds", report.seconds, sandbox=sandbox)
        m.inc("flowbot_runs_read_total", report.runs_read, sandbox=sandbox)
        m.inc("flowbot_findings_total", report.findings, sandbox=sandbox)
        for stage, n in report.skipped.items():
            m.inc("flowbot_items_skipped_total", n, sandbox=sandbox, stage=stage)
        for channel, outcomes in delivery.by_channel.items():
            for result, n in outcomes.items():
                m.inc("flowbot_messages_total", n, channel=channel, result=result)
        m.set("flowbot_outbox_depth", delivery.pending)
        m.replace("flowbot_alerts", self.deps.store.alert_counts(), "state")
        by_status, refreshes = _stats(client)
        for status, n in by_status.items():
            delta = n - before[0].get(status, 0)
            if delta:
                m.inc("flowbot_api_requests_total", delta, status=str(status))
        if refreshes > before[1]:
            m.inc("flowbot_token_refreshes_total", refreshes - before[1])
        if report.ok:
            m.set("flowbot_last_success_timestamp_seconds", time.time(), sandbox=sandbox)

    def _crashed(
        self, deps: Deps, sandbox: str, exc: Exception, started: float, stage: str
    ) -> None:
        """A stage that raised: one line, counted as a failed cycle, recorded like an
        API failure (the meta-alert follows). The traceback goes to the debug log."""
        error = describe(exc, self.settings.secrets())
        log.debug("cycle %s: %s stage raised", sandbox, stage, exc_info=exc)
        seconds = time.monotonic() - started
        self.metrics.inc("flowbot_cycles_total", sandbox=sandbox, result="error")
        self.metrics.observe("flowbot_cycle_duration_seconds", seconds, sandbox=sandbox)
        unrecorded = ""
        try:
            pipeline.record_failure(deps, sandbox, error)
        except Exception as again:  # the store itself may be what fails (disk full)
            unrecorded = "; not recorded either" + (
                "" if str(again) in error else f": {describe(again, self.settings.secrets())}"
            )
        log.error(
            "cycle %s: FAILED in the %s stage (%s)%s; %.2fs",
            sandbox,
            stage,
            error,
            unrecorded,
            seconds,
        )

    def _database_lost(self, sandbox: str) -> bool:
        """True (and the cycle is skipped) once the database file was deleted or
        replaced under the daemon. Noticed at the first cycle after it happens: one
        line, /readyz not ready, and a meta-alert through the connection still open
        (the old file lives on while it is open). Nothing is recreated: a new, empty
        database would forget every alert and send them all again."""
        if self.database_problem is None:
            self.database_problem = database_change(self.settings.db, self._db_identity)
            if self.database_problem is None:
                return False
            log.error("%s", self.database_problem)
            self._announce_directly(f"flowbot: {self.database_problem}")
        self.metrics.inc("flowbot_cycles_total", sandbox=sandbox, result="error")
        return True

    def _announce_directly(self, text: str) -> None:
        """Send a meta-alert straight to the monitoring channels, not through the
        outbox: for when the database itself cannot be trusted (writing through the old
        connection could touch a file that is no longer ours)."""
        for message in routing.meta_messages(self.ruleset, text):
            notifier = self.deps.notifiers.get(message.channel)
            try:
                if notifier is None:
                    raise LookupError(f"no notifier for channel {message.channel}")
                notifier.send(message, None)
            except Exception as exc:  # one channel's trouble stays its own
                log.error(
                    "the meta-alert could not be sent to %s: %s",
                    message.channel,
                    describe(exc, self.settings.secrets()),
                )

    # -------------------------------------------------------------- reload

    def _watched(self, ruleset: RuleSet) -> list[Path]:
        """The rules file and every template folder the rules use (per-rule included)."""
        return [Path(self.settings.rules), *template_folders(ruleset, self.settings.templates)]

    def watch(self) -> None:
        """The mtime poll: reload when the rules file or the templates changed."""
        if self.stopping:
            return
        if fingerprint(self._watched(self.ruleset)) != self._seen:
            self.reload("rules or templates changed on disk")

    def request_reload(self, reason: str) -> None:
        """Reload in the background (a signal handler must not block). Requests that
        arrive while one waits for its turn join it: a storm of SIGHUPs costs at most
        the reload running and one more."""
        with self._queue_lock:
            if self._reload_queued:
                return
            self._reload_queued = True
        threading.Thread(target=self._queued_reload, args=(reason,), daemon=True).start()

    def _queued_reload(self, reason: str) -> None:
        with self._reload_lock:
            with self._queue_lock:
                self._reload_queued = False
            self._reload(reason)

    def reload(self, reason: str) -> bool:
        """Validate the rules file and, when good, run it from the next cycle on.
        A bad file is logged and announced; the last good rules keep running."""
        with self._reload_lock:
            return self._reload(reason)

    def _reload(self, reason: str) -> bool:
        self._seen = fingerprint(self._watched(self.ruleset))
        try:
            ruleset = validate(self.settings.rules, self.settings.templates)
        except ConfigError as exc:
            self._reject(exc)
            return False
        self._rejected = None
        from flowbot.notifiers import build_notifiers

        old = self.ruleset
        notifiers = build_notifiers(ruleset.channels, self.settings, now=self.deps.clock)
        with self._cycle_lock:
            self.deps = replace(self.deps, ruleset=ruleset, notifiers=notifiers)
        self._seen = fingerprint(self._watched(ruleset))
        for sandbox in set(old.sandboxes) - set(ruleset.sandboxes):
            self.last_ok.pop(sandbox, None)
        if (old.poll_every, old.sandboxes) != (ruleset.poll_every, ruleset.sandboxes):
            self.schedule()
        elif old.digest != ruleset.digest:
            self.schedule_digest()
        log.info(
            "rules reloaded (%s): %d rules, sandboxes %s, every %gs",
            reason,
            len(ruleset.rules),
            ", ".join(ruleset.sandboxes),
            ruleset.poll_every.total_seconds(),
        )
        for warning in ruleset.warnings:
            log.warning("rules: %s", warning)
        return True

    def _reject(self, exc: ConfigError) -> None:
        """Log and announce a rejected change once per distinct file and problems; a
        storm of reloads of the same bad file (SIGHUP in a loop) stays quiet."""
        problems = exc.problems or [str(exc)]
        key = rejection_key(self.settings.rules, problems)
        if key == self._rejected:
            log.debug("rules reload rejected again (unchanged): %s", exc)
            return
        self._rejected = key
        log.error(
            "rules reload rejected, the previous rules keep running: %s%s",
            exc,
            "".join(f"\n  {p}" for p in problems) if len(problems) > 1 else "",
        )
        ruleset = self.ruleset
        if not ruleset.monitoring.channels:
            return
        text = "flowbot: a rules change was rejected; the previous rules keep running.\n" + (
            "\n".join(problems)
        )
        with self._cycle_lock:
            store = self.deps.store
            try:
                with store.transaction():
                    store.enqueue(routing.meta_messages(ruleset, text), self.deps.clock())
            except FlowbotError as err:
                log.error("could not queue the rejection notice: %s", err)

    # -------------------------------------------------------------- health

    def ready(self) -> tuple[bool, dict[str, Any]]:
        if self.database_problem is not None:
            return False, {"status": "not ready", "database": self.database_problem}
        ruleset = self.ruleset
        return readiness(self.last_ok, ruleset.sandboxes, ruleset.poll_every, self.deps.clock())

    # -------------------------------------------------------------- running

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop scheduling; the cycle in flight finishes (see `serve`)."""
        if self.stopping:
            return
        self.stopping = True
        log.info("%s: stopping after the cycle in flight", signal.Signals(signum).name)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def wait_idle(self, timeout: float) -> bool:
        """True once no cycle runs (waits at most `timeout` seconds)."""
        if self._cycle_lock.acquire(timeout=timeout):
            self._cycle_lock.release()
            return True
        return False


def _on_signal(daemon: Daemon) -> None:
    def stop(signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=daemon.request_stop, args=(signum,), daemon=True).start()

    def hup(_signum: int, _frame: FrameType | None) -> None:
        daemon.request_reload("SIGHUP")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup)


def serve(settings: Settings, ruleset: RuleSet, *, stop_timeout: float = STOP_TIMEOUT) -> int:
    """Run the daemon until SIGTERM/SIGINT. Returns 0 after a stop. A cycle still in
    flight after `stop_timeout` seconds is abandoned (the process exits 0 at once):
    what it had not committed is read again at the next start.

    Raises AlreadyRunning (another daemon holds the database) and ConfigError."""
    check_templates(ruleset, settings.templates)
    lock = acquire_lock(settings.db)
    _route_scheduler_logs()
    deps = pipeline.build_deps(settings, ruleset)
    daemon = Daemon(settings, ruleset, deps)
    health = None
    slack = _start_slack_actions(settings, daemon)
    try:
        if settings.http_port:
            health = HealthServer(
                settings.http_host,
                settings.http_port,
                ready=daemon.ready,
                metrics=daemon.metrics.render,
                pages=status_pages(settings, daemon),
            ).start()
            log.info("health and metrics on %s", health.url)
        daemon.schedule()
        _on_signal(daemon)
        log.info(
            "flowbot run: %d rules, sandboxes %s, every %gs, database %s",
            len(ruleset.rules),
            ", ".join(ruleset.sandboxes),
            ruleset.poll_every.total_seconds(),
            settings.db,
        )
        for warning in ruleset.warnings:
            log.warning("rules: %s", warning)
        if not daemon.stopping:
            daemon.scheduler.start()
        if not daemon.wait_idle(stop_timeout):
            # Exiting mid-cycle loses nothing: a cycle commits its reads, alerts and
            # queued messages in one transaction (not committed: read again at the next
            # start), and the outbox marks each message sent as soon as it is.
            log.warning(
                "flowbot run: stopped without waiting for the cycle of %s in flight "
                "(still running after %ss); what it had not committed is read again "
                "at the next start",
                daemon.in_flight or "?",
                stop_timeout,
            )
            logging.shutdown()
            os._exit(0)  # the scheduler's worker thread would otherwise hold the process
        log.info("flowbot run: stopped")
        return 0
    finally:
        if health is not None:
            health.stop()
        if slack is not None:
            slack[0].stop()
            slack[1].close()
        daemon.deps.store.close()
        lock.close()


def _start_slack_actions(settings: Settings, daemon: Daemon) -> Any:
    """Socket Mode (buttons, /flowbot) when SLACK_APP_TOKEN is set: (connection, its
    store), or None."""
    from flowbot import slack_socket

    def count(action: str, outcome: str) -> None:
        daemon.metrics.inc("flowbot_slack_actions_total", action=action, outcome=outcome)

    return slack_socket.start(
        settings, lambda: daemon.ruleset, lambda s: daemon.deps.client_for(s),
        daemon.deps.clock, count,
    )  # fmt: skip


def status_pages(settings: Settings, daemon: Daemon) -> Any:
    """The status page's handler: its own connection to the database per page."""
    from flowbot.statuspage import StatusPages
    from flowbot.store import Store

    return StatusPages(
        lambda: Store(settings.db),
        lambda: daemon.ruleset,
        daemon.deps.clock,
        token=settings.ui_token.get(),
        bound_to=settings.http_host,
    )


def _route_scheduler_logs() -> None:
    """APScheduler's warnings (a skipped or missed run) go where flowbot's logs go."""
    ours = logging.getLogger("flowbot")
    theirs = logging.getLogger("apscheduler")
    theirs.setLevel(logging.WARNING)
    theirs.propagate = False
    for handler in ours.handlers:
        theirs.addHandler(handler)
