"""HTTP API: CORS, VPC link to the ALB listener, the interview route, logs and throttling."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match

import app
from tests.cdk.conftest import Synth


def test_cors_allows_the_context_origins_with_credentials(external_turn: Synth) -> None:
    api = external_turn.only("AWS::ApiGatewayV2::Api")
    assert api["ProtocolType"] == "HTTP"
    cors = api["CorsConfiguration"]
    assert cors["AllowOrigins"] == ["https://interview.example.com", "https://admin.example.com"]
    # Credentials carry the ALB stickiness cookie; the bearer token needs Authorization.
    assert cors["AllowCredentials"] is True
    # What the app's own CORS lets a browser send, the HTTP API's preflight allows too.
    assert sorted(cors["AllowHeaders"]) == sorted(h.lower() for h in app.CORS_HEADERS)
    assert sorted(cors["AllowMethods"]) == sorted(app.CORS_METHODS)
    # A 503's Retry-After (draining, at capacity, database failover) must be readable by the
    # browser client, which waits that long before retrying.
    assert [header.lower() for header in cors["ExposeHeaders"]] == ["retry-after"]
    assert "*" not in cors["AllowOrigins"]  # never with credentials (settings refuse it)


def test_route_goes_through_the_vpc_link_to_the_alb_listener(external_turn: Synth) -> None:
    link = external_turn.logical_id("AWS::ApiGatewayV2::VpcLink")
    listener = external_turn.logical_id("AWS::ElasticLoadBalancingV2::Listener")
    private = Match.object_like({"Ref": Match.string_like_regexp("private")})
    external_turn.template.has_resource_properties(
        "AWS::ApiGatewayV2::VpcLink", {"SubnetIds": Match.array_with([private])}
    )
    integration = external_turn.only("AWS::ApiGatewayV2::Integration")
    assert integration["ConnectionType"] == "VPC_LINK"
    assert integration["ConnectionId"] == {"Ref": link}
    assert integration["IntegrationUri"] == {"Ref": listener}
    assert integration["IntegrationType"] == "HTTP_PROXY"
    routes = {
        route["Properties"]["RouteKey"]: route["Properties"]
        for route in external_turn.resources("AWS::ApiGatewayV2::Route").values()
    }
    assert set(routes) == {
        "ANY /api/interview/{proxy+}",
        "GET /api/interview/{session_id}/events",
    }
    integration_id = external_turn.logical_id("AWS::ApiGatewayV2::Integration")
    for route in routes.values():
        assert integration_id in json.dumps(route["Target"])


def test_stage_logs_access_and_throttles(external_turn: Synth) -> None:
    stage = external_turn.only("AWS::ApiGatewayV2::Stage")
    assert stage["StageName"] == "$default"
    assert stage["AutoDeploy"] is True
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == 50
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == 100
    assert stage["DefaultRouteSettings"]["DetailedMetricsEnabled"] is True
    destination = stage["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"]
    assert destination[0] in external_turn.resources("AWS::Logs::LogGroup")
    fields = json.loads(stage["AccessLogSettings"]["Format"])
    assert fields["requestId"] == "$context.requestId"
    assert fields["status"] == "$context.status"
    # Headers are never logged: the bearer token stays out of the logs.
    assert not any("header" in value.lower() for value in fields.values())
