"""A private certificate authority for TLS tests, made with the openssl command: a CA, a
broker certificate for 127.0.0.1 and localhost, and client certificates; a second CA that
signed nothing the broker trusts (a stranger's)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.mosquitto import unavailable


@dataclass(frozen=True, slots=True)
class Issued:
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args[:2])} failed: {result.stderr[-1500:]}")


class PrivateCA:
    """`PrivateCA(folder, "Zhizhi test CA")`: ca.pem and ca.key in folder; `issue(name, ...)`."""

    def __init__(self, folder: Path, name: str) -> None:
        if shutil.which("openssl") is None:
            unavailable("openssl is not installed")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.cert = folder / "ca.pem"
        self.key = folder / "ca.key"
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(self.key), "-out", str(self.cert), "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=folder,
        )  # fmt: skip

    def issue(self, name: str, *, server: bool = False) -> Issued:
        """A certificate with CN `name`; for a server, valid for 127.0.0.1 and localhost."""
        key, request, cert = (self.folder / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
        extensions = self.folder / f"{name}.ext"
        usage = "serverAuth" if server else "clientAuth"
        lines = ["basicConstraints=CA:FALSE", f"extendedKeyUsage={usage}"]
        if server:
            lines.append("subjectAltName=IP:127.0.0.1,DNS:localhost")
        extensions.write_text("\n".join(lines) + "\n")
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(request),
            "-subj", f"/CN={name}", cwd=self.folder,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(request), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(extensions),
            cwd=self.folder,
        )  # fmt: skip
        return Issued(cert, key)
