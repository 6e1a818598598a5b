"""The backend's one settings object: defaults here, overridden by TAGWATCH_* environment
variables (docs/operations.md lists them). Secrets come from the environment or files."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAGWATCH_", extra="ignore")

    # Where the embedded defaults (SQLite database, server key) live.
    data_dir: Path = Path("var")
    # SQLAlchemy URL; empty means SQLite in data_dir. PostgreSQL:
    # postgresql+psycopg://user:password@host:5432/tagwatch
    database_url: str = ""
    # 32-byte key that encrypts device keys at rest, as hex; or a file holding it. With
    # neither, data_dir/server.key is created (mode 0600) on first use.
    server_key: str = Field(default="", repr=False)
    server_key_file: Path | None = None

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    # Several independent brokers: every worker reads and writes all of them, on each one's
    # backend listener ("host:port"; JSON list in TAGWATCH_MQTT_BROKERS). Empty: the one
    # broker above (docs/scaling.md, "Brokers").
    mqtt_brokers: list[str] = []
    mqtt_username: str = "backend"
    mqtt_password: str = Field(default="", repr=False)
    # Shared-subscription group: every worker in the group gets a share of the frames.
    ingest_group: str = "ingest"
    ingest_workers: int = 1
    # A worker commits when it has this many frames or the oldest has waited batch_ms.
    ingest_batch_size: int = 500
    ingest_batch_ms: int = 20
    # Broker keeps a worker's session (subscriptions and queued frames) this long offline.
    ingest_session_expiry_s: int = 3600
    # Each worker serves /healthz, /readyz and /metrics on this port plus its slot (--index);
    # 0: none. Loopback by default: Prometheus on the same host, or a firewall opened for it.
    ingest_http_host: str = "127.0.0.1"
    ingest_http_port: int = 0
    # A frame whose event time is this far behind backend now is flagged late (a backlog).
    late_after_s: int = 300
    # A duplicate arriving this long after the original was stored is a replay (security
    # event). Sooner, it is the device retransmitting because an ack was lost.
    replay_after_s: int = 86_400

    # Service logs (serve, ingest) on stderr: one JSON object per line ("json"), or
    # key=value lines for a person reading a terminal ("keyvalue").
    log_format: Literal["json", "keyvalue"] = "json"

    # Retention per data class, in days (0 keeps forever); purge deletes in small batches.
    retention_positions_days: int = 365
    retention_device_events_days: int = 365
    retention_presence_days: int = 365
    retention_frames_days: int = 90
    retention_security_events_days: int = 730
    # notification_outbox and notification_pages (backend/storage/retention.py)
    retention_notifications_days: int = 90
    # command_deliveries, device_commands and command_queue: as long as the devices' answers
    # (device_events)
    retention_commands_days: int = 365
    retention_batch_rows: int = 2000

    # API and access control (docs/security.md).
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    # Signs bearer tokens (HS256). Empty: derived from the server key, so no second
    # secret needs managing; set it (or the file) to rotate tokens apart from the key.
    jwt_secret: str = Field(default="", repr=False)
    jwt_secret_file: Path | None = None
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 12 * 3600
    # Lock-out: this many consecutive failures lock the account for login_lockout_s.
    login_max_failures: int = 5
    login_lockout_s: int = 900
    # Login attempts per client address and per username per minute (per API process).
    login_rate_per_minute: int = 10
    # argon2id cost; OWASP's minimum is 19 MiB with t=2; the default is argon2-cffi's.
    password_memory_kib: int = 65536
    password_time_cost: int = 3
    # Browser origins allowed to call the API cross-origin; empty closes CORS.
    cors_origins: list[str] = []
    # Requests with a larger body are refused with 413 before the body is read.
    max_request_bytes: int = 1_000_000
    totp_issuer: str = "tagwatch"

    # Notifications (docs/operations.md, "Notifications"). Links in e-mails and pushes
    # point at public_url (the web app as officers reach it).
    public_url: str = "http://127.0.0.1:8080"
    # SMTP relay for e-mail; empty host: no e-mail is sent (counted as unsendable).
    smtp_host: str = ""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: str = Field(default="", repr=False)
    smtp_from: str = "tagwatch@localhost"
    # Web Push (VAPID): the P-256 private key as PEM, or a file holding it. With neither,
    # data_dir/vapid.pem is created (mode 0600) on first use.
    vapid_private_key: str = Field(default="", repr=False)
    vapid_private_key_file: Path | None = None
    vapid_subject: str = "mailto:tagwatch@localhost"
    # Hosts a browser's push subscription may point at (the browsers' push services; a
    # name matches itself and its sub-domains): the dispatcher POSTs to the endpoint, so an
    # endpoint anywhere else is refused. https only, except for a loopback address listed.
    push_hosts: list[str] = [
        "fcm.googleapis.com",
        "updates.push.services.mozilla.com",
        "push.services.mozilla.com",
        "web.push.apple.com",
        "notify.windows.com",
    ]
    # Each API process runs a dispatcher (several are safe: rows are leased); false: none.
    notify_dispatch: bool = True
    # The dispatcher looks for due work this often; one send waits at most send_timeout_s;
    # a failed send is retried with back-off (retry_base_s doubling, at most retry_max_s)
    # until it has been tried max_attempts times; an acknowledgement link works this long.
    notify_tick_s: float = Field(default=5.0, gt=0, le=300)
    notify_send_timeout_s: float = Field(default=10.0, gt=0, le=120)
    notify_retry_base_s: float = Field(default=30.0, gt=0, le=3600)
    notify_retry_max_s: float = Field(default=900.0, gt=0, le=86_400)
    notify_max_attempts: int = Field(default=6, ge=1, le=50)
    notify_ack_ttl_s: int = Field(default=12 * 3600, ge=60, le=7 * 86_400)

    # A warning the victim's device does not acknowledge goes again every resend_s after the
    # first send, `sends` sends in all; resend_s after the last one, unanswered, the on-call
    # officer is told (victim_not_reached): after sends x resend_s, 3 min by default, at most
    # 25 min (docs/rules.md, "Proximity"). The device needs time to answer over a phone's
    # network, and the rules tick (30 s) takes each step: at least two ticks apart, each step
    # comes within one tick of its time (device_commands.Resend).
    victim_warning_resend_s: float = Field(default=60.0, ge=60, le=300)
    victim_warning_sends: int = Field(default=3, ge=1, le=5)

    def broker_list(self) -> list[tuple[str, int]]:
        """The brokers' backend listeners, (host, port), in order."""
        from firmware.brokers import endpoint

        if not self.mqtt_brokers:
            return [(self.mqtt_host, self.mqtt_port)]
        try:
            return [endpoint(b) for b in self.mqtt_brokers]
        except ValueError as e:
            raise ValueError(f"TAGWATCH_MQTT_BROKERS: {e}") from None

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'tagwatch.db'}"
