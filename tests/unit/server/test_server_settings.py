"""ServerSettings: defaults, URL normalisation and refusal of what cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from server.settings import ServerSettings, normalise_db_url


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


@pytest.mark.parametrize("url", ["tcp://broker:1883", "broker:1883", "mqtt://", "mqtt://b:port"])
def test_bad_mqtt_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="mqtt_url"):
        ServerSettings(mqtt_url=url)


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
