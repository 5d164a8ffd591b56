"""The optional TURN server: only with -c turn=true, its ports from turn/turnserver.conf."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from spool_ecs.coturn import BANDWIDTH_KEYS, HARDENING_FLAGS, boot_script, load_turn_config

from harness.coturn import config_key
from tests.cdk.conftest import REPO_DIR, Synth
from tests.turn.test_turnserver_conf import run_entrypoint

SHIPPED_CONF = REPO_DIR / "turn" / "turnserver.conf"
HARDENING_KEYS = (*HARDENING_FLAGS, *BANDWIDTH_KEYS, "denied-peer-ip")
# The least a config given with -c turn_config=... must set besides its own lines.
HARDENED = (
    "use-auth-secret\nno-tcp-relay\nno-multicast-peers\nno-cli\nmax-bps=37500\n"
    "bps-capacity=12500000\ndenied-peer-ip=10.0.0.0-10.255.255.255\n"
)


def _hardening_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if config_key(line) in HARDENING_KEYS]


def _user_data(synth: Synth) -> str:
    """The boot script with CloudFormation references shown as <LogicalId.Attribute>."""
    instance = synth.only("AWS::EC2::Instance")
    parts = instance["UserData"]["Fn::Base64"]["Fn::Join"][1]
    text = []
    for part in parts:
        if isinstance(part, str):
            text.append(part)
        elif "Ref" in part:
            text.append(f"<{part['Ref']}>")
        else:
            text.append("<{}.{}>".format(*part["Fn::GetAtt"]))
    return "".join(text)


def _ingress(synth: Synth) -> set[tuple[str, int, int]]:
    group = next(
        resource["Properties"]
        for name, resource in synth.resources("AWS::EC2::SecurityGroup").items()
        if name.startswith("TurnSecurityGroup")
    )
    rules = group["SecurityGroupIngress"]
    assert all(rule["CidrIp"] == "0.0.0.0/0" for rule in rules)
    return {(rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) for rule in rules}


def test_no_turn_instance_without_the_flag(external_turn: Synth) -> None:
    external_turn.template.resource_count_is("AWS::EC2::Instance", 0)
    external_turn.template.resource_count_is("AWS::EC2::EIPAssociation", 0)
    # The two EIPs are the NAT gateways'.
    assert len(external_turn.resources("AWS::EC2::EIP")) == 2
    assert not any(name.startswith("Turn") for name in external_turn.raw["Resources"])


def test_turn_instance_has_an_elastic_ip_and_the_turn_ports(turn_instance: Synth) -> None:
    turn_instance.template.resource_count_is("AWS::EC2::Instance", 1)
    association = turn_instance.only("AWS::EC2::EIPAssociation")
    assert association["AllocationId"]["Fn::GetAtt"][0].startswith("TurnElasticIp")
    assert _ingress(turn_instance) == {
        ("udp", 3478, 3478),
        ("tcp", 3478, 3478),
        ("tcp", 5349, 5349),
        ("udp", 49152, 65535),
    }


def test_security_group_follows_the_shipped_coturn_config(turn_instance: Synth) -> None:
    config = load_turn_config(SHIPPED_CONF)
    assert ("udp", config.min_port, config.max_port) in _ingress(turn_instance)
    assert ("udp", config.listening_port, config.listening_port) in _ingress(turn_instance)
    assert ("tcp", config.tls_listening_port, config.tls_listening_port) in _ingress(turn_instance)


def test_instance_is_hardened(turn_instance: Synth) -> None:
    instance = turn_instance.only("AWS::EC2::Instance")
    (volume,) = instance["BlockDeviceMappings"]
    assert volume["Ebs"]["Encrypted"] is True
    assert instance["Monitoring"] is True
    assert "KeyName" not in instance  # no SSH key: Session Manager only
    assert "public" in instance["SubnetId"]["Ref"]
    template = turn_instance.only("AWS::EC2::LaunchTemplate")
    assert template["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"] == "required"


def test_boot_script_installs_coturn_with_the_shared_secret(turn_instance: Synth) -> None:
    script = _user_data(turn_instance)
    app_secret = next(
        name
        for name in turn_instance.resources("AWS::SecretsManager::Secret")
        if name.startswith("AppSecret")
    )
    assert "apt-get install -y --no-install-recommends coturn" in script
    assert f'"<{app_secret}>"' in script
    assert '["TURN_SECRET"]' in script
    assert "static-auth-secret=$TURN_SECRET" in script
    assert 'PUBLIC_IP="<TurnElasticIp' in script
    assert 'echo "external-ip=$PUBLIC_IP/$PRIVATE_IP"' in script
    assert "systemctl restart coturn" in script
    # The shipped hardening arrives intact.
    for line in ("use-auth-secret", "denied-peer-ip=169.254.0.0-169.254.255.255", "no-cli"):
        assert f"\n{line}\n" in script
    shipped = _hardening_lines(SHIPPED_CONF.read_text())
    assert {"no-tcp-relay", "max-bps=37500", "bps-capacity=12500000"} <= set(shipped)
    for line in shipped:
        assert f"\n{line}\n" in script, line


def test_the_instance_and_the_compose_service_carry_the_same_hardening(tmp_path: Path) -> None:
    """Both TURN servers run turn/turnserver.conf: the EC2 instance from its boot script, the
    compose service from the file its entrypoint renders. Neither may lose a hardening line."""
    script = boot_script(
        load_turn_config(SHIPPED_CONF), region="r", secret_arn="a", public_ip="203.0.113.10"
    )
    run = run_entrypoint(tmp_path, "compose-secret")
    assert run.returncode == 0 and run.argv is not None, run.stderr
    compose = Path(run.argv[1]).read_text()
    shipped = _hardening_lines(SHIPPED_CONF.read_text())
    assert {config_key(line) for line in shipped} == set(HARDENING_KEYS)
    assert _hardening_lines(script) == shipped
    assert _hardening_lines(compose) == shipped


def test_instance_role_reads_only_the_app_secret(turn_instance: Synth) -> None:
    policies = [
        policy["Properties"]
        for name, policy in turn_instance.resources("AWS::IAM::Policy").items()
        if name.startswith("TurnRole")
    ]
    (policy,) = policies
    statements = policy["PolicyDocument"]["Statement"]
    assert statements == [
        {
            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            "Effect": "Allow",
            "Resource": {"Ref": next(iter(turn_instance.resources("AWS::SecretsManager::Secret")))},
        }
    ]


def test_tasks_use_the_turn_instance_as_their_relay(turn_instance: Synth) -> None:
    (container,) = turn_instance.only("AWS::ECS::TaskDefinition")["ContainerDefinitions"]
    environment: dict[str, Any] = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert environment["TURN_SERVER"]["Fn::GetAtt"][0].startswith("TurnElasticIp")
    assert environment["TURN_SERVER"]["Fn::GetAtt"][1] == "PublicIp"
    assert environment["RTC_ICE_TRANSPORT_POLICY"] == "relay"
    assert "TURN_TLS_PORT" not in environment  # no real certificate yet: no turns: URL
    assert "TurnPublicIp" in turn_instance.raw["Outputs"]


# The config module on its own -----------------------------------------------------------------


def _conf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "turnserver.conf"
    path.write_text(text)
    return path


def test_config_ports_and_defaults(tmp_path: Path) -> None:
    config = load_turn_config(_conf(tmp_path, HARDENED + "min-port=50000\nmax-port=50100\n"))
    assert (config.min_port, config.max_port) == (50000, 50100)
    assert (config.listening_port, config.tls_listening_port) == (3478, 5349)
    assert config.cert is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("min-port=50000\n", "use-auth-secret"),
        (HARDENED + "min-port=60000\nmax-port=50000\n", "above max-port"),
        (HARDENED + "listening-port=http\n", "not a port"),
        (HARDENED + "# SPOOL_TURNSERVER_CONF\n", "must not contain"),
        # An open relay: TCP relays, no bandwidth caps, internal peers reachable.
        (HARDENED.replace("no-tcp-relay\n", ""), "must set no-tcp-relay:"),
        (HARDENED.replace("max-bps=37500\n", ""), "must set max-bps:"),
        (HARDENED.replace("bps-capacity=12500000\n", ""), "must set bps-capacity:"),
        (HARDENED.replace("no-multicast-peers\n", ""), "must set no-multicast-peers:"),
        (HARDENED.replace("no-cli\n", ""), "must set no-cli:"),
        (HARDENED.split("denied-peer-ip")[0], "must set denied-peer-ip:"),
        ("use-auth-secret\n", "no-tcp-relay, no-multicast-peers, no-cli, max-bps, bps-capacity"),
        (HARDENED.replace("max-bps=37500", "max-bps=0"), "max-bps='0' must be a positive"),
        (HARDENED.replace("bps-capacity=12500000", "bps-capacity=lots"), "bps-capacity="),
    ],
)
def test_config_refuses_what_would_break_the_relay(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_turn_config(_conf(tmp_path, text))


def test_missing_config_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="turn_config"):
        load_turn_config(tmp_path / "nope.conf")


def test_secret_and_address_in_the_file_are_replaced(tmp_path: Path) -> None:
    text = HARDENED + "static-auth-secret=leaked\n--external-ip=1.2.3.4\nrealm=x\n"
    script = boot_script(
        load_turn_config(_conf(tmp_path, text)), region="r", secret_arn="a", public_ip="p"
    )
    assert "leaked" not in script and "1.2.3.4" not in script
    assert "\nrealm=x\n" in script


def test_boot_script_is_clean_bash() -> None:
    script = boot_script(
        load_turn_config(SHIPPED_CONF),
        region="eu-west-1",
        secret_arn="arn:aws:secretsmanager:eu-west-1:111122223333:secret:app",
        public_ip="203.0.113.10",
    )
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    result = subprocess.run(
        [shellcheck, "--shell=bash", "-"], input=script, text=True, capture_output=True
    )
    assert result.returncode == 0, result.stdout
