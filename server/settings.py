"""Settings of the central server (`zhizhi server`): database, broker, HTTP and media storage.

One frozen model, built by the command line (contract section 1) or by tests. A
`postgresql://` URL is normalised to the psycopg 3 driver SQLAlchemy needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from common.mqtt_url import MqttUrl, TlsFiles, parse_mqtt_url
from server.storage import BlobStore, LocalStore, S3Config, S3Store

KIB = 1024
MIB = 1024 * KIB

_PG_PREFIXES = ("postgresql://", "postgres://", "postgresql+psycopg2://")
_PG_DRIVER = "postgresql+psycopg://"
_DB_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")

# Environment variables read by `ServerSettings.from_env`, by field name.
ENV_NAMES: dict[str, str] = {
    "db_url": "ZHIZHI_DB_URL",
    "mqtt_url": "ZHIZHI_MQTT_URL",
    "host": "ZHIZHI_HOST",
    "port": "ZHIZHI_PORT",
    "media_dir": "ZHIZHI_MEDIA_DIR",
    "mqtt_group": "ZHIZHI_MQTT_GROUP",
    "mqtt_client_id": "ZHIZHI_MQTT_CLIENT_ID",
    "api_docs": "ZHIZHI_API_DOCS",
    "metrics_public": "ZHIZHI_METRICS_PUBLIC",
    "forwarded_allow_ips": "ZHIZHI_FORWARDED_ALLOW_IPS",
    "mqtt_session_expiry_s": "ZHIZHI_MQTT_SESSION_EXPIRY_S",
    "member_heartbeat_s": "ZHIZHI_MEMBER_HEARTBEAT_S",
    "member_grace_s": "ZHIZHI_MEMBER_GRACE_S",
    "mqtt_ca_file": "ZHIZHI_MQTT_CA_FILE",
    "mqtt_cert_file": "ZHIZHI_MQTT_CERT_FILE",
    "mqtt_key_file": "ZHIZHI_MQTT_KEY_FILE",
    "dispatch_file": "ZHIZHI_DISPATCH_FILE",
    "group_window_s": "ZHIZHI_GROUP_WINDOW_S",
    "evidence_store": "ZHIZHI_EVIDENCE_STORE",
    "s3_bucket": "ZHIZHI_S3_BUCKET",
    "s3_endpoint_url": "ZHIZHI_S3_ENDPOINT_URL",
    "s3_region": "ZHIZHI_S3_REGION",
    "s3_prefix": "ZHIZHI_S3_PREFIX",
    "s3_access_key_id": "ZHIZHI_S3_ACCESS_KEY_ID",
    "s3_secret_access_key": "ZHIZHI_S3_SECRET_ACCESS_KEY",
    "s3_addressing": "ZHIZHI_S3_ADDRESSING",
    "evidence_presign_s": "ZHIZHI_EVIDENCE_PRESIGN_S",
}


def normalise_db_url(url: str) -> str:
    """`postgresql://...` (and `postgres://`) → `postgresql+psycopg://...`; SQLite unchanged."""
    for prefix in _PG_PREFIXES:
        if url.startswith(prefix):
            return _PG_DRIVER + url.removeprefix(prefix)
    return url


class ServerSettings(BaseModel):
    """Everything the server process needs to start; immutable once built. A refused value
    is never echoed (URLs carry passwords)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    db_url: str = Field(
        default="sqlite:///./zhizhi.db",
        description="sqlite:///path or postgresql://user@host:port/db",
    )
    mqtt_url: str = Field(default="mqtt://127.0.0.1:1883", description="mqtt://host:port")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, gt=0, lt=65536)
    media_dir: Path = Field(
        default=Path("./zhizhi-media"), description="Evidence files: media_dir/ab/cd/<sha256>"
    )
    max_payload_bytes: int = Field(
        default=256 * KIB, gt=0, description="Larger MQTT or HTTP event messages are refused"
    )
    max_evidence_bytes: int = Field(
        default=50 * MIB, gt=0, description="Larger evidence uploads are refused"
    )
    mqtt_group: str = Field(
        default="zhizhi-server",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Shared-subscription group: $share/<group>/zhizhi/v1/+/+/+/events",
    )
    mqtt_client_id: str = Field(
        default="zhizhi-server-1",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Stable per server process (a StatefulSet ordinal, a compose service "
        "index), so the broker keeps its persistent session across restarts",
    )
    mqtt_session_expiry_s: int = Field(
        default=3600,
        ge=0,
        le=0xFFFFFFFF,
        description="Seconds the broker keeps this process's session (and queues its share of "
        "the events) while it is away; 0: the session ends with the connection",
    )
    member_heartbeat_s: float = Field(
        default=10.0, gt=0, le=600, description="How often this process records its heartbeat"
    )
    member_grace_s: float = Field(
        default=120.0,
        gt=0,
        description="A member without a heartbeat this long is removed by a live process: its "
        "broker session ended, so the broker stops handing it events (issue 18)",
    )
    mqtt_ca_file: Path | None = Field(
        default=None, description="mqtts://: the CA that signed the broker's certificate"
    )
    mqtt_cert_file: Path | None = Field(
        default=None, description="mqtts://: this server's client certificate, if the broker asks"
    )
    mqtt_key_file: Path | None = Field(default=None, description="mqtts://: its private key")

    group_window_s: float = Field(
        default=300.0,
        ge=0,
        description="A new alert of the same site, camera, rule and zone within this many "
        "seconds of the open incident's latest alert joins it (0: never group)",
    )
    dispatch_file: Path | None = Field(
        default=None, description="Dispatch rules, deadlines and webhooks (YAML)"
    )
    session_ttl_s: float = Field(default=12 * 3600.0, gt=0, description="Login session lifetime")
    stream_recheck_s: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="How often an open live stream re-checks its token (revoked, expired, "
        "user disabled or re-scoped: the stream ends)",
    )
    login_max_failures_per_user: int = Field(default=5, ge=1)
    login_max_failures_per_ip: int = Field(default=20, ge=1)
    login_window_s: float = Field(default=900.0, gt=0, description="Failed logins count this long")
    retention_days: dict[str, float] = Field(
        default_factory=lambda: {
            "falling_object": 180.0,
            "person_fall": 90.0,
            "fire_lane": 30.0,
            "garbage_pile": 30.0,
        },
        description="Days to keep evidence, per incident type (longest wins for shared files)",
    )
    retention_default_days: float = Field(
        default=30.0, gt=0, description="Days to keep evidence that belongs to no incident"
    )
    escalation_check_s: float = Field(default=10.0, gt=0, description="Deadline check period")
    retention_sweep_s: float = Field(default=3600.0, gt=0, description="Retention sweep period")
    max_plan_bytes: int = Field(default=10 * MIB, gt=0, description="Largest site plan image")

    # Exposure (issue 14) ---------------------------------------------------------------------
    api_docs: bool = Field(
        default=False,
        description="Serve the OpenAPI schema at /openapi.json (to admins only); no HTML docs "
        "page is ever served, so nothing is loaded from a CDN",
    )
    metrics_public: bool = Field(
        default=False,
        description="Serve /metrics without a token (default: a viewer-rank bearer token, as "
        "a Prometheus scrape config can send)",
    )
    forwarded_allow_ips: str = Field(
        default="",
        pattern=r"^[0-9A-Fa-f.:/,* ]*$",
        description="Proxies whose X-Forwarded-For/-Proto are believed (comma-separated IPs or "
        "networks, as uvicorn's --forwarded-allow-ips); empty: none, the peer is the client",
    )
    max_password_checks: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Password checks (argon2id, 64 MiB each) run at once; logins beyond wait",
    )
    # Evidence in object storage (issue 16) --------------------------------------------------
    evidence_store: Literal["local", "s3"] = Field(
        default="local",
        description="Where evidence files live: local (media_dir) or s3 (an S3-compatible "
        "bucket: MinIO, 阿里云 OSS, 腾讯云 COS), which several server processes share",
    )
    s3_bucket: str = Field(default="", description="The bucket (evidence_store s3)")
    s3_endpoint_url: str | None = Field(
        default=None, description="http(s)://host:port of MinIO, OSS, COS (None: AWS)"
    )
    s3_region: str = "us-east-1"
    s3_prefix: str = Field(default="evidence/", description="Keys are <prefix>ab/cd/<sha256>")
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_addressing: Literal["path", "virtual", "auto"] = Field(
        default="path", description="path (MinIO) or virtual (OSS, COS: bucket.endpoint)"
    )
    evidence_presign_s: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="With s3: answer an evidence view (audited first) with a redirect to a "
        "URL of the bucket valid this many seconds; 0: the server streams it",
    )
    max_photo_bytes: int = Field(
        default=8 * MIB, gt=0, description="Largest photo a field worker attaches (JPEG or PNG)"
    )

    @model_validator(mode="after")
    def _grace_covers_heartbeats(self) -> ServerSettings:
        if self.member_grace_s < 2 * self.member_heartbeat_s:
            raise ValueError(
                f"member_grace_s ({self.member_grace_s}) must be at least two heartbeats "
                f"(member_heartbeat_s {self.member_heartbeat_s})"
            )
        return self

    @model_validator(mode="after")
    def _bucket_named(self) -> ServerSettings:
        if self.evidence_store == "s3" and not self.s3_bucket:
            raise ValueError("evidence_store s3 needs s3_bucket (ZHIZHI_S3_BUCKET)")
        return self

    @field_validator("retention_days")
    @classmethod
    def _positive_days(cls, days: dict[str, float]) -> dict[str, float]:
        bad = sorted(kind for kind, value in days.items() if value <= 0)
        if bad:
            raise ValueError(f"retention days must be positive (not for {', '.join(bad)})")
        return days

    @field_validator("db_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        url = normalise_db_url(url.strip())
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if scheme not in _DB_SCHEMES:
            raise ValueError(f"db_url must be sqlite:///path or postgresql://..., got {url!r}")
        return url

    @field_validator("mqtt_url")
    @classmethod
    def _known_broker(cls, url: str) -> str:
        parse_mqtt_url(url)  # ValueError (without the password) for anything else
        return url.strip()

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    def blob_store(self) -> BlobStore:
        """Where evidence files live (server/storage.py)."""
        if self.evidence_store == "local":
            return LocalStore(self.media_dir)
        secret = self.s3_secret_access_key
        return S3Store(
            S3Config(
                bucket=self.s3_bucket,
                endpoint_url=self.s3_endpoint_url,
                region=self.s3_region,
                prefix=self.s3_prefix,
                access_key_id=self.s3_access_key_id,
                secret_access_key=secret.get_secret_value() if secret is not None else None,
                addressing=self.s3_addressing,
            )
        )

    @property
    def broker(self) -> MqttUrl:
        return parse_mqtt_url(self.mqtt_url)

    @property
    def mqtt_host(self) -> str:
        return self.broker.host

    @property
    def mqtt_port(self) -> int:
        return self.broker.port

    @property
    def mqtt_tls(self) -> bool:
        return self.broker.tls

    @property
    def tls_files(self) -> TlsFiles:
        return TlsFiles(self.mqtt_ca_file, self.mqtt_cert_file, self.mqtt_key_file)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: object) -> ServerSettings:
        """Settings from ZHIZHI_* variables (see ENV_NAMES); keyword overrides win."""
        values: dict[str, object] = {
            field: environ[name] for field, name in ENV_NAMES.items() if environ.get(name)
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls.model_validate(values)
