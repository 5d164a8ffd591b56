"""VPC, cluster, internal ALB, Fargate service, logs and the container's settings and secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk.assertions import Match

from interview.config import Settings
from tests.cdk.conftest import EXTERNAL_TURN, ORIGINS, Synth, synthesize


def _container(synth: Synth) -> dict[str, Any]:
    (container,) = synth.only("AWS::ECS::TaskDefinition")["ContainerDefinitions"]
    return container


def _environment(synth: Synth) -> dict[str, str]:
    return {item["Name"]: item["Value"] for item in _container(synth)["Environment"]}


def _secret_sources(synth: Synth) -> dict[str, tuple[str, str]]:
    """Env name -> (logical id of the secret, JSON field) for each ECS secret."""
    sources = {}
    for item in _container(synth)["Secrets"]:
        ref, suffix = item["ValueFrom"]["Fn::Join"][1]
        sources[item["Name"]] = (ref["Ref"], suffix.strip(":").split("::")[0])
    return sources


def test_vpc_spans_two_azs_with_a_nat_gateway_for_each_private_subnet(external_turn: Synth) -> None:
    external_turn.template.resource_count_is("AWS::EC2::VPC", 1)
    external_turn.template.resource_count_is("AWS::EC2::NatGateway", 2)
    subnets = external_turn.resources("AWS::EC2::Subnet").values()
    zones = {repr(subnet["Properties"]["AvailabilityZone"]) for subnet in subnets}
    assert len(zones) == 2
    # Each private subnet's default route leads to a NAT gateway.
    nat_routes = [
        route
        for route in external_turn.resources("AWS::EC2::Route").values()
        if "NatGatewayId" in route["Properties"]
    ]
    assert len(nat_routes) == 2
    external_turn.template.resource_count_is("AWS::EC2::FlowLog", 1)


def test_cluster_has_container_insights(external_turn: Synth) -> None:
    external_turn.template.has_resource_properties(
        "AWS::ECS::Cluster",
        {"ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}]},
    )


def test_load_balancer_is_internal_and_reached_only_from_the_vpc_link(external_turn: Synth) -> None:
    balancer = external_turn.only("AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert balancer["Scheme"] == "internal"
    ingress = external_turn.resources("AWS::EC2::SecurityGroupIngress").values()
    to_alb = [
        rule["Properties"]
        for rule in ingress
        if "LoadBalancerSecurityGroup" in rule["Properties"]["GroupId"]["Fn::GetAtt"][0]
    ]
    assert len(to_alb) == 1
    assert to_alb[0]["FromPort"] == 80
    assert "VpcLinkSecurityGroup" in to_alb[0]["SourceSecurityGroupId"]["Fn::GetAtt"][0]
    # No rule anywhere lets the internet reach the ALB or the tasks.
    for group in external_turn.resources("AWS::EC2::SecurityGroup").values():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert rule.get("CidrIp") != "0.0.0.0/0"


def _target_group_attributes(synth: Synth) -> dict[str, str]:
    attributes = synth.only("AWS::ElasticLoadBalancingV2::TargetGroup")["TargetGroupAttributes"]
    return {item["Key"]: item["Value"] for item in attributes}


def test_target_group_health_check_and_draining(external_turn: Synth) -> None:
    external_turn.template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {
            # Shallow: a database failover must not fail every task's check at once.
            "HealthCheckPath": "/api/interview/health/live",
            "Matcher": {"HttpCode": "200"},
            "Port": 7860,
            "TargetType": "ip",
        },
    )
    attributes = _target_group_attributes(external_turn)
    # Covers the longest request in flight: API Gateway's 30 s integration timeout; a task with
    # live calls is protected, so it is not drained for them.
    assert attributes["deregistration_delay.timeout_seconds"] == "30"
    assert (
        int(attributes["deregistration_delay.timeout_seconds"]) >= Settings().events_stream_seconds
    )
    # No stickiness unless asked for: any task serves any request of any session.
    assert attributes.get("stickiness.enabled", "false") == "false"


def test_stickiness_is_a_switch(tmp_path: Path) -> None:
    sticky = synthesize({"cors_origins": ORIGINS, "stickiness": "true"}, tmp_path)
    attributes = _target_group_attributes(sticky)
    assert attributes["stickiness.enabled"] == "true"
    assert attributes["stickiness.type"] == "lb_cookie"
    assert attributes["stickiness.lb_cookie.duration_seconds"] == "3600"


def test_service_in_private_subnets_with_circuit_breaker_rollback(external_turn: Synth) -> None:
    service = external_turn.only("AWS::ECS::Service")
    assert service["LaunchType"] == "FARGATE"
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {
        "Enable": True,
        "Rollback": True,
    }
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert all("private" in subnet["Ref"] for subnet in network["Subnets"])
    assert service["LoadBalancers"][0]["ContainerPort"] == 7860


def test_logs_go_to_the_named_log_group(external_turn: Synth) -> None:
    external_turn.template.has_resource_properties(
        "AWS::Logs::LogGroup", {"LogGroupName": "/ecs/interview-service"}
    )
    log_group = next(
        name
        for name, group in external_turn.resources("AWS::Logs::LogGroup").items()
        if group["Properties"].get("LogGroupName") == "/ecs/interview-service"
    )
    options = _container(external_turn)["LogConfiguration"]["Options"]
    assert options["awslogs-group"] == {"Ref": log_group}


def test_app_secret_provides_openai_key_and_turn_secret(external_turn: Synth) -> None:
    sources = _secret_sources(external_turn)
    app_secret = next(
        name
        for name, secret in external_turn.resources("AWS::SecretsManager::Secret").items()
        if "TURN_SECRET" in secret["Properties"]["GenerateSecretString"]["GenerateStringKey"]
    )
    assert sources["OPENAI_API_KEY"] == (app_secret, "OPENAI_API_KEY")
    assert sources["TURN_SECRET"] == (app_secret, "TURN_SECRET")


def test_database_credentials_reach_the_task_from_the_database_secret(
    external_turn: Synth,
) -> None:
    attachment = external_turn.logical_id("AWS::SecretsManager::SecretTargetAttachment")
    sources = _secret_sources(external_turn)
    assert {name: field for name, (ref, field) in sources.items() if ref == attachment} == {
        "DB_HOST": "host",
        "DB_PORT": "port",
        "DB_NAME": "dbname",
        "DB_USER": "username",
        "DB_PASSWORD": "password",
    }
    # No credential is ever a plain environment variable.
    assert not {"DATABASE_URL", "DB_PASSWORD", "TURN_SECRET", "OPENAI_API_KEY"} & set(
        _environment(external_turn)
    )


def test_container_settings_come_from_context(external_turn: Synth) -> None:
    environment = _environment(external_turn)
    assert environment["TURN_SERVER"] == EXTERNAL_TURN
    assert environment["TURN_TLS_PORT"] == "5349"
    assert environment["RTC_ICE_TRANSPORT_POLICY"] == "relay"
    assert environment["CORS_ORIGINS"] == "https://interview.example.com,https://admin.example.com"
    assert environment["ENVIRONMENT"] == "production"
    assert environment["FORWARDED_ALLOW_IPS"] == "*"
    # Rate limits count the address API Gateway appended to Forwarded, not what a client forged.
    assert environment["TRUSTED_PROXY_HOPS"] == "1"
    assert environment["CLIENT_ADDRESS_HEADER"] == "forwarded"
    assert environment["PORT"] == "7860"
    # API Gateway's HTTP API buffers whole responses: events end their responses early.
    assert environment["EVENTS_DELIVERY"] == "poll"


def test_the_drain_fits_the_stop_timeout(external_turn: Synth) -> None:
    """SIGTERM -> the app drains (live calls up to DRAIN_MAX_SECONDS, then what is in flight and
    the shutdown) and exits within SHUTDOWN_GRACE_SECONDS, before ECS's SIGKILL at stopTimeout
    (Fargate allows 120 s at most). The app itself accepts the pair (its own validation)."""
    environment = _environment(external_turn)
    names = ("SHUTDOWN_GRACE_SECONDS", "DRAIN_MAX_SECONDS", "HTTP_KEEP_ALIVE_SECONDS")
    settings = Settings.model_validate({name.lower(): environment[name] for name in names})
    stop_timeout = _container(external_turn)["StopTimeout"]
    assert stop_timeout == 120
    assert settings.drain_limit_seconds == 100
    assert (
        settings.drain_limit_seconds + settings.shutdown_reserve_seconds
        <= settings.shutdown_grace_seconds
        < stop_timeout
    )
    # Live calls get most of it: the drain's minimum and the reserve are short.
    assert settings.drain_min_seconds < settings.drain_limit_seconds
    # The ALB closes idle keep-alive connections before the task does (no 502 on a close).
    balancer = external_turn.only("AWS::ElasticLoadBalancingV2::LoadBalancer")
    idle = {a["Key"]: a["Value"] for a in balancer["LoadBalancerAttributes"]}
    assert settings.http_keep_alive_seconds > int(idle["idle_timeout.timeout_seconds"])


def test_the_task_role_may_protect_the_clusters_tasks_only(external_turn: Synth) -> None:
    """What ECS_AGENT_URI/task-protection/v1/state calls with the task role."""
    task_definition = external_turn.only("AWS::ECS::TaskDefinition")
    task_role = task_definition["TaskRoleArn"]["Fn::GetAtt"][0]
    cluster = external_turn.logical_id("AWS::ECS::Cluster")
    statements = [
        (statement, policy["Properties"]["Roles"])
        for policy in external_turn.resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if any(str(action).startswith("ecs:") for action in _listed(statement["Action"]))
    ]
    assert len(statements) == 1
    statement, roles = statements[0]
    assert roles == [{"Ref": task_role}]
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == ["ecs:GetTaskProtection", "ecs:UpdateTaskProtection"]
    # arn:<partition>:ecs:<region>:<account>:task/<this cluster>/*
    parts = statement["Resource"]["Fn::Join"][1]
    assert parts[-3:] == [":task/", {"Ref": cluster}, "/*"]
    assert "Condition" not in statement


def _listed(value: object) -> list[object]:
    return value if isinstance(value, list) else [value]


def test_autoscaling_tracks_cpu(external_turn: Synth) -> None:
    external_turn.template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {"MinCapacity": 2, "MaxCapacity": 6, "ScalableDimension": "ecs:service:DesiredCount"},
    )
    external_turn.template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                {
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "ECSServiceAverageCPUUtilization"
                    },
                    "TargetValue": 60,
                }
            ),
        },
    )
