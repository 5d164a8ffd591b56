"""The repository's coturn config (turn/turnserver.conf) as the EC2 TURN server's boot script.

The instance runs the same hardened file the turn/ tests load, so the ports opened in its
security group are read from that file rather than repeated here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# coturn's own defaults when the file leaves a key out.
DEFAULT_LISTENING_PORT = 3478
DEFAULT_TLS_LISTENING_PORT = 5349
DEFAULT_MIN_PORT = 49152
DEFAULT_MAX_PORT = 65535

# Keys the boot script writes itself: the secret never sits in the repository or the template,
# and the public address is only known in the account.
MANAGED_KEYS = frozenset({"static-auth-secret", "external-ip"})

# What keeps an internet-facing coturn from being an open relay, given that its credentials are
# as good as public (any visitor of the service gets some): turn/turnserver.conf sets each of
# them and says why. A config given with -c turn_config=... must set them too.
HARDENING_FLAGS = ("no-tcp-relay", "no-multicast-peers", "no-cli")
# Bytes per second, per allocation and for the whole server.
BANDWIDTH_KEYS = ("max-bps", "bps-capacity")

_HEREDOC_MARK = "SPOOL_TURNSERVER_CONF"


@dataclass(frozen=True)
class TurnConfig:
    text: str
    listening_port: int
    tls_listening_port: int
    min_port: int
    max_port: int
    cert: str | None
    pkey: str | None

    def without_managed_keys(self) -> str:
        kept = [line for line in self.text.splitlines() if _key(line) not in MANAGED_KEYS]
        return "\n".join(kept).rstrip("\n") + "\n"


def _key(line: str) -> str | None:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    return stripped.split("=", 1)[0].strip().lstrip("-")


def _values(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key = _key(line)
        if key is not None:
            values[key] = line.split("=", 1)[1].strip() if "=" in line else ""
    return values


def _port(values: dict[str, str], key: str, default: int, path: Path) -> int:
    raw = values.get(key)
    if raw is None:
        return default
    try:
        port = int(raw.strip().strip('"'))
    except ValueError:
        raise ValueError(f"{path}: {key}={raw!r} is not a port") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{path}: {key}={port} is not a port")
    return port


def load_turn_config(path: Path) -> TurnConfig:
    if not path.is_file():
        raise FileNotFoundError(
            f"the TURN server (-c turn=true) is configured from {path}, which does not exist; "
            "point -c turn_config=... at a coturn config file"
        )
    text = path.read_text(encoding="utf-8")
    if _HEREDOC_MARK in text:
        raise ValueError(f"{path} must not contain the line {_HEREDOC_MARK}")
    values = _values(text)
    if "use-auth-secret" not in values:
        # The app hands out TURN REST credentials; without this coturn would refuse all of them.
        raise ValueError(f"{path} must set use-auth-secret (the app issues TURN REST credentials)")
    missing = [key for key in (*HARDENING_FLAGS, *BANDWIDTH_KEYS) if key not in values]
    if "denied-peer-ip" not in values:
        missing.append("denied-peer-ip")
    if missing:
        raise ValueError(
            f"{path} must set {', '.join(missing)}: anyone can get TURN credentials from the "
            "service, so the relay must refuse TCP relays and internal peers and cap bandwidth "
            "(see turn/turnserver.conf)"
        )
    for key in BANDWIDTH_KEYS:
        raw = values[key].strip('"')
        if not raw.isdigit() or int(raw) <= 0:
            # coturn reads 0 (or nonsense) as unlimited.
            raise ValueError(f"{path}: {key}={values[key]!r} must be a positive number of bytes/s")
    min_port = _port(values, "min-port", DEFAULT_MIN_PORT, path)
    max_port = _port(values, "max-port", DEFAULT_MAX_PORT, path)
    if min_port > max_port:
        raise ValueError(f"{path}: min-port {min_port} is above max-port {max_port}")
    return TurnConfig(
        text=text,
        listening_port=_port(values, "listening-port", DEFAULT_LISTENING_PORT, path),
        tls_listening_port=_port(values, "tls-listening-port", DEFAULT_TLS_LISTENING_PORT, path),
        min_port=min_port,
        max_port=max_port,
        cert=values.get("cert", "").strip('"') or None,
        pkey=values.get("pkey", "").strip('"') or None,
    )


def boot_script(config: TurnConfig, *, region: str, secret_arn: str, public_ip: str) -> str:
    """A bash script for Ubuntu 24.04 (coturn 4.6 from its archive); tokens may be passed in.

    The secret is read at boot with the instance role, so it is never in the user data, which
    anyone with ec2:DescribeInstanceAttribute can read.
    """
    certificate = ""
    if config.cert and config.pkey:
        # coturn refuses to start its TLS listener without these files. A self-signed pair keeps
        # the plain TURN ports working until a real certificate for the TURN host name is
        # installed (cdk/README.md); browsers only use turns: when TURN_TLS_PORT is set.
        certificate = f"""
if [ ! -s {config.cert} ] || [ ! -s {config.pkey} ]; then
  install -d -m 0750 -o root -g turnserver "$(dirname {config.cert})" "$(dirname {config.pkey})"
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$PUBLIC_IP" \\
    -keyout {config.pkey} -out {config.cert}
  chgrp turnserver {config.cert} {config.pkey}
  chmod 0640 {config.cert} {config.pkey}
fi
"""
    return f"""#!/bin/bash
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends coturn python3-boto3 openssl curl
systemctl stop coturn || true

PUBLIC_IP="{public_ip}"
IMDS_TOKEN=$(curl -fsS -X PUT http://169.254.169.254/latest/api/token \\
  -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
PRIVATE_IP=$(curl -fsS -H "X-aws-ec2-metadata-token: $IMDS_TOKEN" \\
  http://169.254.169.254/latest/meta-data/local-ipv4)
TURN_SECRET=$(python3 - "{region}" "{secret_arn}" <<'PY'
import json, sys
import boto3
client = boto3.client("secretsmanager", region_name=sys.argv[1])
print(json.loads(client.get_secret_value(SecretId=sys.argv[2])["SecretString"])["TURN_SECRET"])
PY
)
{certificate}
umask 027
cat > /etc/turnserver.conf <<'{_HEREDOC_MARK}'
{config.without_managed_keys()}{_HEREDOC_MARK}
{{
  echo "external-ip=$PUBLIC_IP/$PRIVATE_IP"
  echo "static-auth-secret=$TURN_SECRET"
}} >> /etc/turnserver.conf
chown root:turnserver /etc/turnserver.conf
chmod 0640 /etc/turnserver.conf
unset TURN_SECRET

systemctl enable coturn
systemctl restart coturn
"""
