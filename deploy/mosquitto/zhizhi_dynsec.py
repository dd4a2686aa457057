#!/usr/bin/env python3
"""Write the broker's access rules for Zhizhi: a Mosquitto dynamic-security file.

Why not an `acl_file`: Mosquitto 2.0's acl_file never checks SUBSCRIBE, only delivery. An edge
login could subscribe to the server's shared subscription ($share/zhizhi-server/...); the
broker then handed it its turn and the ACL dropped the message, so half of another edge's
events were lost with one such subscriber (issue 14). The dynamic-security plugin checks every
subscription against the role's subscribe rules, `$share/...` included, so here:

- each edge login (edge-<site_id>-<edge_id>) may publish only its own events and status and
  subscribe to and receive only its own ack and cmd topics: never `$share`, never a wildcard;
- the server login alone may take the shared subscription (and the plain one), receive events
  and status of every site, and publish acks and commands;
- nothing is allowed by default, nothing to anonymous clients.

Usage (standard library only; the broker must be stopped while the file is replaced, or add
edges live with mosquitto_ctrl as docs/mqtt.md shows):

    python3 zhizhi_dynsec.py --edges edges.txt --out /var/lib/mosquitto/dynamic-security.json \\
        [--passwords passwords.txt] [--group zhizhi-server] [--admin broker-admin]

`edges.txt`: one `site_id edge_id` per line (# comments). `passwords.txt`: `login password`
per line; a login missing there (or without --passwords) gets a new random password, written
to `<out>.new-passwords` (mode 600) for you to hand to the box and delete. Logins already in
`--out` keep their password hash unless --passwords names them.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any

SERVER_LOGIN = "zhizhi-server"
ITERATIONS = 10_000  # PBKDF2-SHA512 (mosquitto_ctrl writes 101; the generated secrets are random)
_ID = re.compile(r"^[A-Za-z0-9_-]{1,63}$")


def edge_login(site_id: str, edge_id: str) -> str:
    return f"edge-{site_id}-{edge_id}"


def password_entry(password: str, iterations: int = ITERATIONS) -> dict[str, Any]:
    """The dynamic-security fields of a password: base64 salt and PBKDF2-SHA512 hash."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return {
        "password": base64.b64encode(digest).decode("ascii"),
        "salt": base64.b64encode(salt).decode("ascii"),
        "iterations": iterations,
    }


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


def server_role(group: str) -> dict[str, Any]:
    return {
        "rolename": SERVER_LOGIN,
        "textname": "Zhizhi server processes: consume events and status, send acks and commands",
        "acls": [
            _acl("subscribePattern", f"$share/{group}/zhizhi/v1/+/+/+/events"),
            _acl("subscribePattern", "zhizhi/v1/+/+/+/events"),  # group=None (one process)
            _acl("subscribePattern", "zhizhi/v1/+/+/status"),
            _acl("publishClientReceive", "zhizhi/v1/+/+/+/events"),
            _acl("publishClientReceive", "zhizhi/v1/+/+/status"),
            _acl("publishClientSend", "zhizhi/v1/+/+/ack"),
            _acl("publishClientSend", "zhizhi/v1/+/+/cmd"),
            _acl("unsubscribePattern", "#"),
        ],
    }


def edge_role(site_id: str, edge_id: str) -> dict[str, Any]:
    base = f"zhizhi/v1/{site_id}/{edge_id}"
    return {
        "rolename": edge_login(site_id, edge_id),
        "textname": f"Edge box {edge_id} of site {site_id}: its own topics only",
        "acls": [
            _acl("publishClientSend", f"{base}/+/events"),
            _acl("publishClientSend", f"{base}/status"),
            _acl("subscribeLiteral", f"{base}/ack"),
            _acl("subscribeLiteral", f"{base}/cmd"),
            _acl("publishClientReceive", f"{base}/ack"),
            _acl("publishClientReceive", f"{base}/cmd"),
            _acl("unsubscribePattern", f"{base}/#"),
        ],
    }


def admin_role() -> dict[str, Any]:
    control = "$CONTROL/dynamic-security/#"
    return {
        "rolename": "dynsec-admin",
        "textname": "Changes these rules live with mosquitto_ctrl; no Zhizhi traffic",
        "acls": [
            _acl("publishClientSend", control),
            _acl("publishClientReceive", control),
            _acl("subscribePattern", control),
        ],
    }


def read_edges(path: Path) -> list[tuple[str, str]]:
    """`site_id edge_id` pairs; ValueError naming the line of anything else."""
    edges = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or not all(_ID.match(word) for word in words):
            raise ValueError(f"{path}:{number}: expected 'site_id edge_id' ([A-Za-z0-9_-])")
        edges.append((words[0], words[1]))
    return edges


def read_passwords(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            login, _, password = line.strip().partition(" ")
            found[login] = password.strip()
    return found


def build(
    edges: list[tuple[str, str]],
    passwords: dict[str, str],
    *,
    group: str,
    admin: str | None,
    existing: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The dynamic-security document, and the passwords made up for logins that had none."""
    kept = {c["username"]: c for c in (existing or {}).get("clients", [])}
    roles = [server_role(group)] + [edge_role(site, edge) for site, edge in edges]
    logins = [(SERVER_LOGIN, SERVER_LOGIN)] + [
        (edge_login(s, e), edge_login(s, e)) for s, e in edges
    ]
    if admin is not None:
        roles.append(admin_role())
        logins.append((admin, "dynsec-admin"))
    made: dict[str, str] = {}
    clients = []
    for login, role in logins:
        if login in passwords:
            secret: dict[str, Any] = password_entry(passwords[login])
        elif login in kept and "password" in kept[login]:
            secret = {k: kept[login][k] for k in ("password", "salt", "iterations")}
        else:
            made[login] = secrets.token_urlsafe(24)
            secret = password_entry(made[login])
        clients.append({"username": login, **secret, "roles": [{"rolename": role}]})
    document = {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }
    return document, made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=Path, required=True, help="site_id edge_id per line")
    parser.add_argument("--out", type=Path, required=True, help="dynamic-security JSON to write")
    parser.add_argument("--passwords", type=Path, help="login password per line")
    parser.add_argument("--group", default="zhizhi-server", help="the server's $share group")
    parser.add_argument("--admin", help="also a login for mosquitto_ctrl (no Zhizhi traffic)")
    args = parser.parse_args(argv)
    if not _ID.match(args.group):
        parser.error("--group must be a plain name")
    try:
        edges = read_edges(args.edges)
        passwords = read_passwords(args.passwords)
        existing = json.loads(args.out.read_text(encoding="utf-8")) if args.out.exists() else None
    except (OSError, ValueError) as error:
        sys.stderr.write(f"zhizhi_dynsec: {error}\n")
        return 2
    document, made = build(edges, passwords, group=args.group, admin=args.admin, existing=existing)
    temporary = args.out.with_name(args.out.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    temporary.chmod(0o600)
    temporary.replace(args.out)
    if made:
        secrets_file = args.out.with_name(args.out.name + ".new-passwords")
        secrets_file.touch(mode=0o600)
        secrets_file.write_text("".join(f"{login} {pw}\n" for login, pw in made.items()))
        sys.stdout.write(f"new passwords for {len(made)} login(s) in {secrets_file}\n")
    sys.stdout.write(f"wrote {args.out}: {len(edges)} edge(s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
