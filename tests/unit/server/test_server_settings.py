"""ServerSettings: defaults, URL normalisation and refusal of what cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from server.settings import ENV_NAMES, ServerSettings, normalise_db_url


def test_defaults_run_on_one_machine() -> None:
    settings = ServerSettings()

    assert settings.db_url == "sqlite:///./zhizhi.db"
    assert settings.is_sqlite
    assert (settings.mqtt_host, settings.mqtt_port, settings.mqtt_tls) == ("127.0.0.1", 1883, False)
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.media_dir == Path("./zhizhi-media")
    assert settings.max_payload_bytes == 256 * 1024
    assert settings.mqtt_group == "zhizhi-server"
    assert settings.mqtt_client_id == "zhizhi-server-1"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgresql://postgres@127.0.0.1:5432/zhizhi",
            "postgresql+psycopg://postgres@127.0.0.1:5432/zhizhi",
        ),
        ("postgres://u:p@db/zhizhi", "postgresql+psycopg://u:p@db/zhizhi"),
        ("postgresql+psycopg://u@db/z", "postgresql+psycopg://u@db/z"),
        ("sqlite:////var/lib/zhizhi.db", "sqlite:////var/lib/zhizhi.db"),
    ],
)
def test_database_urls_are_normalised_to_the_psycopg_driver(given: str, expected: str) -> None:
    assert normalise_db_url(given) == expected
    assert ServerSettings(db_url=given).db_url == expected


@pytest.mark.parametrize("url", ["mysql://u@db/z", "zhizhi.db", "", "http://db/z"])
def test_unsupported_databases_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="db_url"):
        ServerSettings(db_url=url)


def test_mqtt_url_gives_host_and_port() -> None:
    settings = ServerSettings(mqtt_url="mqtt://broker.local:11883")

    assert (settings.mqtt_host, settings.mqtt_port) == ("broker.local", 11883)
    assert ServerSettings(mqtt_url="mqtts://broker.local").mqtt_port == 8883


@pytest.mark.parametrize("url", ["http://broker:1883", "broker:1883", "mqtt://", "mqtt://b:port"])
def test_bad_mqtt_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="mqtt_url"):
        ServerSettings(mqtt_url=url)


def test_a_refused_mqtt_url_never_shows_its_password() -> None:
    with pytest.raises(ValidationError) as refused:
        ServerSettings(mqtt_url="http://zhizhi-server:s3cret@broker:1883")
    assert "s3cret" not in str(refused.value)


def test_every_documented_environment_variable_reaches_its_setting(tmp_path: Path) -> None:
    environ = {
        "ZHIZHI_DB_URL": "postgresql://zhizhi@db/zhizhi",
        "ZHIZHI_MQTT_URL": "mqtts://broker:8883",
        "ZHIZHI_HOST": "192.0.2.10",
        "ZHIZHI_PORT": "9000",
        "ZHIZHI_MEDIA_DIR": str(tmp_path / "media"),
        "ZHIZHI_MQTT_GROUP": "district-7",
        "ZHIZHI_MQTT_CLIENT_ID": "zhizhi-server-2",
        "ZHIZHI_API_DOCS": "true",
        "ZHIZHI_METRICS_PUBLIC": "1",
        "ZHIZHI_FORWARDED_ALLOW_IPS": "10.0.0.0/8",
        "ZHIZHI_MQTT_SESSION_EXPIRY_S": "600",
        "ZHIZHI_MEMBER_HEARTBEAT_S": "5",
        "ZHIZHI_MEMBER_GRACE_S": "30",
        "ZHIZHI_MQTT_CA_FILE": str(tmp_path / "ca.pem"),
        "ZHIZHI_MQTT_CERT_FILE": str(tmp_path / "server.pem"),
        "ZHIZHI_MQTT_KEY_FILE": str(tmp_path / "server.key"),
        "ZHIZHI_DISPATCH_FILE": str(tmp_path / "dispatch.yaml"),
        "ZHIZHI_GROUP_WINDOW_S": "60",
        "ZHIZHI_EVIDENCE_STORE": "s3",
        "ZHIZHI_S3_BUCKET": "evidence",
        "ZHIZHI_S3_ENDPOINT_URL": "http://minio:9000",
        "ZHIZHI_S3_REGION": "cn-north-1",
        "ZHIZHI_S3_PREFIX": "district-7/",
        "ZHIZHI_S3_ACCESS_KEY_ID": "zhizhi",
        "ZHIZHI_S3_SECRET_ACCESS_KEY": "minio-secret",
        "ZHIZHI_S3_ADDRESSING": "virtual",
        "ZHIZHI_EVIDENCE_PRESIGN_S": "60",
    }
    assert set(environ) == set(ENV_NAMES.values())  # this test covers every one

    settings = ServerSettings.from_env(environ)

    assert settings.db_url == "postgresql+psycopg://zhizhi@db/zhizhi"
    assert (settings.mqtt_host, settings.mqtt_port, settings.mqtt_tls) == ("broker", 8883, True)
    assert (settings.host, settings.port) == ("192.0.2.10", 9000)
    assert settings.media_dir == tmp_path / "media"
    assert (settings.mqtt_group, settings.mqtt_client_id) == ("district-7", "zhizhi-server-2")
    assert settings.api_docs and settings.metrics_public
    assert settings.forwarded_allow_ips == "10.0.0.0/8"
    assert settings.mqtt_session_expiry_s == 600
    assert (settings.member_heartbeat_s, settings.member_grace_s) == (5.0, 30.0)
    assert settings.tls_files.ca_file == tmp_path / "ca.pem"
    assert settings.tls_files.key_file == tmp_path / "server.key"
    assert settings.dispatch_file == tmp_path / "dispatch.yaml"
    assert settings.group_window_s == 60.0
    assert (settings.evidence_store, settings.s3_bucket) == ("s3", "evidence")
    assert (settings.s3_endpoint_url, settings.s3_region) == ("http://minio:9000", "cn-north-1")
    assert (settings.s3_prefix, settings.s3_addressing) == ("district-7/", "virtual")
    assert settings.s3_access_key_id == "zhizhi"
    assert settings.s3_secret_access_key is not None
    assert settings.s3_secret_access_key.get_secret_value() == "minio-secret"
    assert "minio-secret" not in repr(settings)
    assert settings.evidence_presign_s == 60
    # an option given on the command line wins over the environment
    assert ServerSettings.from_env(environ, mqtt_client_id="x-1").mqtt_client_id == "x-1"


def test_the_grace_must_cover_two_heartbeats() -> None:
    with pytest.raises(ValidationError, match="member_grace_s"):
        ServerSettings(member_heartbeat_s=10, member_grace_s=15)


@pytest.mark.parametrize("client_id", ["", "a b", "x/y", "#", "a" * 129])
def test_a_client_id_the_broker_and_topics_cannot_take_is_refused(client_id: str) -> None:
    with pytest.raises(ValidationError, match="mqtt_client_id"):
        ServerSettings(mqtt_client_id=client_id)


def test_settings_are_frozen_and_strict() -> None:
    settings = ServerSettings()

    with pytest.raises(ValidationError):
        settings.port = 9000  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        ServerSettings(db="sqlite:///x.db")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "field", [{"port": 0}, {"port": 70000}, {"max_payload_bytes": 0}, {"mqtt_group": "a/b"}]
)
def test_out_of_range_values_are_refused(field: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ServerSettings.model_validate(field)


def test_from_env_reads_zhizhi_variables_and_overrides_win() -> None:
    environ = {
        "ZHIZHI_DB_URL": "postgresql://postgres@db/zhizhi",
        "ZHIZHI_PORT": "9000",
        "ZHIZHI_MQTT_CLIENT_ID": "zhizhi-server-2",
        "UNRELATED": "x",
    }

    settings = ServerSettings.from_env(environ, port=8081, host=None)

    assert settings.db_url == "postgresql+psycopg://postgres@db/zhizhi"
    assert settings.port == 8081
    assert settings.host == "127.0.0.1"
    assert settings.mqtt_client_id == "zhizhi-server-2"


def test_an_object_store_without_a_bucket_is_refused() -> None:
    with pytest.raises(ValidationError, match="s3_bucket"):
        ServerSettings(evidence_store="s3")
