"""CloudWatch alarms on 5xx and latency, all notifying the alarm topic."""

from __future__ import annotations

from typing import Any

from tests.cdk.conftest import Synth


def _alarms(synth: Synth) -> dict[str, dict[str, Any]]:
    return {
        name: alarm["Properties"]
        for name, alarm in synth.resources("AWS::CloudWatch::Alarm").items()
    }


def _by_metric(synth: Synth, namespace: str, metric: str) -> dict[str, Any]:
    found = [
        alarm
        for alarm in _alarms(synth).values()
        if alarm.get("Namespace") == namespace and alarm.get("MetricName") == metric
    ]
    assert len(found) == 1, f"{namespace} {metric}: {len(found)} alarms"
    return found[0]


def test_5xx_alarms_on_targets_alb_and_api(external_turn: Synth) -> None:
    target = _by_metric(external_turn, "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count")
    assert {d["Name"] for d in target["Dimensions"]} == {"LoadBalancer", "TargetGroup"}
    elb = _by_metric(external_turn, "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count")
    assert elb["Statistic"] == "Sum"
    api = _by_metric(external_turn, "AWS/ApiGateway", "5xx")
    assert api["Statistic"] == "Sum"


def test_latency_alarms_leave_the_events_stream_out(external_turn: Synth) -> None:
    api = _by_metric(external_turn, "AWS/ApiGateway", "IntegrationLatency")
    assert api["ExtendedStatistic"] == "p95"
    route = next(d["Value"] for d in api["Dimensions"] if d["Name"] == "Route")
    assert route == "ANY /api/interview/{proxy+}"
    target = _by_metric(external_turn, "AWS/ApplicationELB", "TargetResponseTime")
    # Above the events stream's 25 s, below API Gateway's 30 s.
    assert 25 < target["Threshold"] < 30


def test_every_alarm_notifies_the_encrypted_topic(external_turn: Synth) -> None:
    topic = external_turn.logical_id("AWS::SNS::Topic")
    assert "KmsMasterKeyId" in external_turn.only("AWS::SNS::Topic")
    alarms = _alarms(external_turn)
    assert len(alarms) == 6
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": topic}]
