"""One MQTT URL parser and one TLS set-up for the whole tree (edge, server, tools).

`mqtt://[user:pass@]host[:port]` (also `tcp://`, port 1883) or `mqtts://` (also `ssl://`, port
8883, TLS). TLS verifies the broker's certificate against the system's CAs or `ca_file` (a
private CA), and presents a client certificate when `cert_file` (and `key_file`) are given.
Standard library only: the edge and the server both import it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

PLAIN_SCHEMES = ("mqtt", "tcp")
TLS_SCHEMES = ("mqtts", "ssl")
PLAIN_PORT = 1883
TLS_PORT = 8883


@dataclass(frozen=True, slots=True)
class MqttUrl:
    """Where a broker is and how to log in; `tls` for mqtts://."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        """The URL without its password, for logs."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def parse_mqtt_url(url: str) -> MqttUrl:
    """The broker of an MQTT URL; ValueError for anything else (the message names the URL
    without its password)."""
    parts = urlsplit(url.strip())
    shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    if parts.scheme not in PLAIN_SCHEMES + TLS_SCHEMES or not parts.hostname:
        raise ValueError(
            f"MQTT URL must look like mqtt://host:port or mqtts://host:port, got {shown!r}"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"MQTT URL has a port that is not a number: {shown!r}") from None
    tls = parts.scheme in TLS_SCHEMES
    return MqttUrl(
        host=parts.hostname,
        port=port or (TLS_PORT if tls else PLAIN_PORT),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Files for an mqtts:// connection: the CA that signed the broker's certificate (None:
    the system's), and this client's own certificate and key when the broker asks for one."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("a client key needs its certificate (cert_file)")


def tls_context(files: TlsFiles | None = None) -> ssl.SSLContext:
    """A client context that verifies the broker's certificate and name (TLS 1.2 or later);
    OSError or ssl.SSLError when a file is missing or unreadable."""
    files = files or TlsFiles()
    context = ssl.create_default_context(
        cafile=str(files.ca_file) if files.ca_file is not None else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if files.cert_file is not None:
        context.load_cert_chain(
            str(files.cert_file), str(files.key_file) if files.key_file is not None else None
        )
    return context
