"""common/mqtt_url.py: the one MQTT URL parser of the tree, and the TLS context it sets up."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from common.mqtt_url import MqttUrl, TlsFiles, parse_mqtt_url, tls_context


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker", MqttUrl("broker", 1883)),
        ("tcp://10.0.0.2:1884", MqttUrl("10.0.0.2", 1884)),
        ("mqtts://broker", MqttUrl("broker", 8883, tls=True)),
        ("ssl://broker:18883", MqttUrl("broker", 18883, tls=True)),
        ("mqtts://edge-a-b:p%40ss@broker", MqttUrl("broker", 8883, True, "edge-a-b", "p@ss")),
        (" mqtt://[::1]:1883 ", MqttUrl("::1", 1883)),
    ],
)
def test_urls_give_host_port_tls_and_login(url: str, expected: MqttUrl) -> None:
    assert parse_mqtt_url(url) == expected


@pytest.mark.parametrize("url", ["http://b", "broker:1883", "mqtt://", "mqtt://b:port", ""])
def test_anything_else_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="MQTT URL"):
        parse_mqtt_url(url)


def test_a_refused_url_and_a_logged_one_never_show_the_password() -> None:
    with pytest.raises(ValueError) as refused:
        parse_mqtt_url("http://user:s3cret@broker")
    assert "s3cret" not in str(refused.value)
    assert str(parse_mqtt_url("mqtts://user:s3cret@broker")) == "mqtts://user@broker:8883"


def test_the_tls_context_verifies_the_broker_and_refuses_old_protocols() -> None:
    context = tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_a_missing_ca_file_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        tls_context(TlsFiles(ca_file=tmp_path / "missing.pem"))


def test_a_key_without_its_certificate_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="certificate"):
        TlsFiles(key_file=tmp_path / "edge.key")
