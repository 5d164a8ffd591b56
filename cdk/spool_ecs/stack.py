"""SpoolEcsStack: API Gateway (HTTP API) -> VPC link -> internal ALB -> Fargate, with PostgreSQL.

The stack is environment-agnostic (no account, no region, no lookups), so it synthesizes
offline; the account and region come from the credentials at `cdk deploy`.
"""

from __future__ import annotations

import json
from typing import Any

import jsii
from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from spool_ecs.coturn import load_turn_config
from spool_ecs.nag import acknowledge
from spool_ecs.settings import StackSettings
from spool_ecs.turn import TurnServer

CONTAINER_NAME = "interview-service"
CONTAINER_PORT = 7860
LOG_GROUP_NAME = "/ecs/interview-service"
# The target group's check: this process only (up, not draining, voice models loaded), never the
# database. An RDS Multi-AZ failover (60-120 s) would fail the deep /api/interview/health on every
# task at once, and ECS would replace them all, cutting every live interview.
HEALTH_PATH = "/api/interview/health/live"
API_ROUTE_PATH = "/api/interview/{proxy+}"
# The live-events stream answers for EVENTS_STREAM_SECONDS (25 s) by design; its own route keeps
# it out of the latency alarm of every other request.
EVENTS_ROUTE_PATH = "/api/interview/{session_id}/events"
DB_NAME = "spool"
DB_USER = "spool"
# Not 5432: one less default for a scanner to guess (AwsSolutions-RDS11); the task reads the
# port from the database secret, so nothing else depends on it.
DB_PORT = 5433

# ALB draining. ECS deregisters a task it stops and sends SIGTERM once the ALB has drained it:
# this long at most, less once no request is in flight. Every request comes through API
# Gateway, whose HTTP API integration timeout is 30 s (the events stream ends at 25 s), so 30 s
# covers any request in flight. Live calls need no more: a task holding one is protected from
# scale-in and deployments (task scale-in protection) and is not chosen, and a call's media
# goes through TURN, not the ALB.
DEREGISTRATION_DELAY = Duration.seconds(30)
# Stickiness, when switched on (-c stickiness=true): the cookie outlives the session TTL
# (SESSION_TTL_MINUTES=60).
STICKINESS_DURATION = Duration.minutes(60)
# After SIGTERM the app drains (app.py DrainingServer): live calls may go on for DRAIN_MAX_SECONDS,
# then it answers what is in flight and shuts down, all within SHUTDOWN_GRACE_SECONDS, which
# stays below ECS's SIGKILL at the container's stopTimeout (120 s: Fargate's maximum). The drain
# leaves SHUTDOWN_GRACE_SECONDS 10 s for the requests in flight and the shutdown (the app
# refuses a DRAIN_MAX_SECONDS that leaves less).
STOP_TIMEOUT = Duration.seconds(120)
SHUTDOWN_GRACE_SECONDS = 110
DRAIN_MAX_SECONDS = 100
# Above the ALB's idle timeout (60 s): the ALB, not the task, closes an idle keep-alive
# connection, so it never sends a request on one the task is closing (a 502).
ALB_IDLE_TIMEOUT = Duration.seconds(60)
HTTP_KEEP_ALIVE_SECONDS = 65
# The ECS agent's task-protection endpoint calls these for the task, with the task role.
TASK_PROTECTION_ACTIONS = ["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"]


class SpoolEcsStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, settings: StackSettings, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings

        self.vpc = self._network()
        self.app_secret = self._app_secret()
        self.turn = self._turn_server()
        self.alarm_topic = self._alarm_topic()
        self.database_security_group = ec2.SecurityGroup(
            self,
            "DatabaseSecurityGroup",
            vpc=self.vpc,
            description="PostgreSQL: reachable from the interview service only",
            allow_all_outbound=False,
        )
        self.database = self._database()
        self.log_group = logs.LogGroup(
            self,
            "ServiceLogs",
            log_group_name=LOG_GROUP_NAME,
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=self.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        self.task_definition, self.container = self._task_definition()
        self.service = self._service()
        self.load_balancer, self.listener, self.target_group = self._load_balancer()
        self.database.connections.allow_from(
            self.service, ec2.Port.tcp(DB_PORT), "the interview service only"
        )
        self._autoscaling()
        self.http_api, self.stage, self.api_route, self.events_route = self._http_api()
        self._alarms()

        CfnOutput(self, "ApiUrl", value=self.http_api.api_endpoint, description="API base URL")
        CfnOutput(self, "ServiceLogGroup", value=self.log_group.log_group_name)
        CfnOutput(self, "AppSecretArn", value=self.app_secret.secret_arn)
        if self.turn is not None:
            CfnOutput(self, "TurnPublicIp", value=self.turn.public_ip)

    # Network -------------------------------------------------------------------------------

    def _network(self) -> ec2.Vpc:
        vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            # One NAT per AZ: the tasks reach TURN, ECR, Secrets Manager and OpenAI through it,
            # and one AZ's outage must not cut the other's tasks off.
            nat_gateways=2,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                ),
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22
                ),
                ec2.SubnetConfiguration(
                    name="database", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                ),
            ],
        )
        flow_logs = logs.LogGroup(
            self,
            "VpcFlowLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        return vpc

    # Secrets -------------------------------------------------------------------------------

    def _app_secret(self) -> secretsmanager.Secret:
        secret = secretsmanager.Secret(
            self,
            "AppSecret",
            description=(
                "Spool Interview: OPENAI_API_KEY (set it after the first deploy; empty means the "
                "scripted interviewer) and TURN_SECRET (coturn's static-auth-secret, generated)"
            ),
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"OPENAI_API_KEY": ""}),
                generate_string_key="TURN_SECRET",
                exclude_punctuation=True,
                password_length=48,
            ),
        )
        acknowledge(
            secret,
            "AwsSolutions-SMG4",
            "OPENAI_API_KEY is issued by OpenAI and cannot be rotated by a Lambda here, and a "
            "rotated TURN_SECRET must reach coturn and every task at once; both are rotated by "
            "an operator (cdk/README.md), followed by a new deployment.",
        )
        return secret

    # TURN ----------------------------------------------------------------------------------

    def _turn_server(self) -> TurnServer | None:
        if not self.settings.turn_instance:
            return None
        return TurnServer(
            self,
            "Turn",
            vpc=self.vpc,
            secret=self.app_secret,
            config=load_turn_config(self.settings.turn_config),
            instance_type=self.settings.turn_instance_type,
        )

    def _turn_server_address(self) -> str | None:
        if self.settings.turn_server:
            return self.settings.turn_server
        if self.turn is not None:
            port = self.turn.config.listening_port
            return self.turn.public_ip if port == 3478 else f"{self.turn.public_ip}:{port}"
        return None

    # Database ------------------------------------------------------------------------------

    def _database(self) -> rds.DatabaseInstance:
        database = rds.DatabaseInstance(
            self,
            "Database",
            engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_17),
            instance_type=ec2.InstanceType(self.settings.db_instance_type),
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[self.database_security_group],
            port=DB_PORT,
            database_name=DB_NAME,
            credentials=rds.Credentials.from_generated_secret(DB_USER),
            storage_encrypted=True,
            multi_az=True,
            allocated_storage=20,
            max_allocated_storage=100,
            storage_type=rds.StorageType.GP3,
            backup_retention=Duration.days(7),
            deletion_protection=True,
            removal_policy=RemovalPolicy.SNAPSHOT,
            auto_minor_version_upgrade=True,
            instance_identifier=self._database_identifier(),
            cloudwatch_logs_exports=["postgresql"],
            # Transcripts are interview records: the connection must be encrypted.
            parameters={"rds.force_ssl": "1"},
        )
        # Created here rather than by RDS so it has a retention, without the log-retention
        # Lambda that cloudwatch_logs_retention would add.
        database_logs = logs.LogGroup(
            self,
            "DatabaseLogs",
            log_group_name=f"/aws/rds/instance/{self._database_identifier()}/postgresql",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        database.node.add_dependency(database_logs)
        acknowledge(
            database.node.find_child("Secret"),
            "AwsSolutions-SMG4",
            "ECS reads the database password when a task starts; rotating it underneath running "
            "tasks would break their new connections. Rotate it by hand and redeploy the service "
            "(cdk/README.md).",
        )
        return database

    def _database_identifier(self) -> str:
        # Fixed (per stack name) so its log group can exist before the instance does.
        return f"{self.stack_name.lower()}-database"

    # ECS -----------------------------------------------------------------------------------

    def _image(self) -> ecs.ContainerImage:
        if self.settings.image_uri:
            return ecs.ContainerImage.from_registry(self.settings.image_uri)
        repository = ecr.Repository.from_repository_name(
            self, "ImageRepository", self.settings.ecr_repository
        )
        return ecs.ContainerImage.from_ecr_repository(repository, self.settings.image_tag)

    def _environment(self) -> dict[str, str]:
        settings = self.settings
        environment = {
            "ENVIRONMENT": "production",
            "HOST": "0.0.0.0",  # noqa: S104 - the task's own interface, behind the ALB only
            "PORT": str(CONTAINER_PORT),
            "CORS_ORIGINS": ",".join(settings.cors_origins),
            # Only the ALB reaches the task (security group), so its X-Forwarded-* are trusted.
            "FORWARDED_ALLOW_IPS": "*",
            # The client, for the rate limits: API Gateway (HTTP API) sends its integration no
            # X-Forwarded-For of the client's; it appends the address it saw to `Forwarded`,
            # which the ALB passes on. The elements before it are the client's own.
            "TRUSTED_PROXY_HOPS": "1",
            "CLIENT_ADDRESS_HEADER": "forwarded",
            "SHUTDOWN_GRACE_SECONDS": str(SHUTDOWN_GRACE_SECONDS),
            "DRAIN_MAX_SECONDS": str(DRAIN_MAX_SECONDS),
            "HTTP_KEEP_ALIVE_SECONDS": str(HTTP_KEEP_ALIVE_SECONDS),
            "MAX_CONCURRENT_INTERVIEWS": str(settings.max_concurrent_interviews),
            "SPEECH_THREADS": str(max(1, settings.task_cpu // 1024)),
            # HTTP APIs buffer each response whole (no streaming mode: only REST APIs stream,
            # https://docs.aws.amazon.com/apigateway/latest/developerguide/response-transfer-mode.html),
            # so /events responses end right after their first events instead of being held
            # open for 25 s (README: "Live events").
            "EVENTS_DELIVERY": "poll",
        }
        turn_server = self._turn_server_address()
        if turn_server:
            environment["TURN_SERVER"] = turn_server
            # Tasks sit in private subnets: their media can only flow through the relay.
            environment["RTC_ICE_TRANSPORT_POLICY"] = "relay"
            if settings.turn_tls_port:
                environment["TURN_TLS_PORT"] = str(settings.turn_tls_port)
        return environment

    def _task_definition(self) -> tuple[ecs.FargateTaskDefinition, ecs.ContainerDefinition]:
        task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=self.settings.task_cpu,
            memory_limit_mib=self.settings.task_memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        database_secret = self.database.secret
        assert database_secret is not None
        container = task_definition.add_container(
            CONTAINER_NAME,
            container_name=CONTAINER_NAME,
            image=self._image(),
            essential=True,
            port_mappings=[ecs.PortMapping(container_port=CONTAINER_PORT, name="http")],
            logging=ecs.LogDrivers.aws_logs(stream_prefix="interview", log_group=self.log_group),
            stop_timeout=STOP_TIMEOUT,
            environment=self._environment(),
            secrets={
                "OPENAI_API_KEY": ecs.Secret.from_secrets_manager(
                    self.app_secret, "OPENAI_API_KEY"
                ),
                "TURN_SECRET": ecs.Secret.from_secrets_manager(self.app_secret, "TURN_SECRET"),
                # The generated RDS secret's fields; the app builds DATABASE_URL from them.
                "DB_HOST": ecs.Secret.from_secrets_manager(database_secret, "host"),
                "DB_PORT": ecs.Secret.from_secrets_manager(database_secret, "port"),
                "DB_NAME": ecs.Secret.from_secrets_manager(database_secret, "dbname"),
                "DB_USER": ecs.Secret.from_secrets_manager(database_secret, "username"),
                "DB_PASSWORD": ecs.Secret.from_secrets_manager(database_secret, "password"),
            },
        )
        # Task scale-in protection (ECS sets ECS_AGENT_URI in the container): the app protects
        # its own task while it holds live calls. Task ARNs exist only once tasks run, so the
        # tightest scope IAM offers is every task of this stack's cluster, which runs only
        # this service.
        task_definition.add_to_task_role_policy(
            iam.PolicyStatement(
                actions=TASK_PROTECTION_ACTIONS,
                resources=[self.cluster.arn_for_tasks("*")],
            )
        )
        cluster = self.get_logical_id(self.cluster.node.default_child)  # as nag names it
        acknowledge(
            task_definition.task_role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:"
            f"<AWS::AccountId>:task/<{cluster}>/*]",
            "A task protects itself from scale-in through the ECS agent, with its task role; "
            "task ARNs exist only at run time, so the resource is every task of this stack's "
            "cluster, which runs this service alone.",
        )
        acknowledge(
            task_definition.obtain_execution_role(),
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource to scope it to (AWS documents it with "
            "Resource *); the image pull, log and secret permissions are scoped to their ARNs.",
        )
        acknowledge(
            task_definition,
            "AwsSolutions-ECS2",
            "The plain environment variables are non-secret settings (ports, CORS origins, "
            "TURN host, sizes); every secret reaches the container from Secrets Manager.",
        )
        return task_definition, container

    def _service(self) -> ecs.FargateService:
        security_group = ec2.SecurityGroup(
            self,
            "ServiceSecurityGroup",
            vpc=self.vpc,
            description="Interview service tasks: HTTP from the ALB only",
            # Outbound: TURN relay (UDP), ECR, Secrets Manager, PostgreSQL, OpenAI.
            allow_all_outbound=True,
        )
        return ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            desired_count=self.settings.min_tasks,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[security_group],
            assign_public_ip=False,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            min_healthy_percent=100,
            max_healthy_percent=200,
            # Models load and warm before /health/live says ok (README: about 10 s on 2 cores,
            # more on a cold Fargate task pulling the image).
            health_check_grace_period=Duration.minutes(3),
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )

    def _load_balancer(
        self,
    ) -> tuple[
        elbv2.ApplicationLoadBalancer, elbv2.ApplicationListener, elbv2.ApplicationTargetGroup
    ]:
        security_group = ec2.SecurityGroup(
            self,
            "LoadBalancerSecurityGroup",
            vpc=self.vpc,
            description="Internal ALB: HTTP from the API Gateway VPC link only",
            allow_all_outbound=False,
        )
        load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=self.vpc,
            internet_facing=False,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_group=security_group,
            drop_invalid_header_fields=True,
            # Above the events stream's 25 s and API Gateway's 30 s integration limit.
            idle_timeout=ALB_IDLE_TIMEOUT,
        )
        acknowledge(
            load_balancer,
            "AwsSolutions-ELB2",
            "The ALB is internal and reachable only from the API Gateway VPC link, so every "
            "request it serves is already in the API access log (route, status, integration "
            "latency and error). ALB logs would also need the region at synth (its log-delivery "
            "account), and this stack stays environment-agnostic.",
        )

        # Plain HTTP inside the VPC: TLS ends at API Gateway, and the ALB is reachable only from
        # the VPC link's security group.
        listener = load_balancer.add_listener(
            "Http", port=80, protocol=elbv2.ApplicationProtocol.HTTP, open=False
        )
        target_group = elbv2.ApplicationTargetGroup(
            self,
            "TargetGroup",
            vpc=self.vpc,
            port=CONTAINER_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[
                self.service.load_balancer_target(
                    container_name=CONTAINER_NAME, container_port=CONTAINER_PORT
                )
            ],
            health_check=elbv2.HealthCheck(
                path=HEALTH_PATH,
                healthy_http_codes="200",
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
            deregistration_delay=DEREGISTRATION_DELAY,
            stickiness_cookie_duration=STICKINESS_DURATION if self.settings.stickiness else None,
            # In-flight requests track live sessions (each holds an events stream open), so new
            # interviews go to the task with the fewest, not round-robin onto a busy one.
            load_balancing_algorithm_type=(
                elbv2.TargetGroupLoadBalancingAlgorithmType.LEAST_OUTSTANDING_REQUESTS
            ),
        )
        listener.add_target_groups("Service", target_groups=[target_group])
        return load_balancer, listener, target_group

    def _autoscaling(self) -> None:
        scaling = self.service.auto_scale_task_count(
            min_capacity=self.settings.min_tasks, max_capacity=self.settings.max_tasks
        )
        # Speech recognition and synthesis are CPU bound; scale out before replies slow down.
        # Scale-in never picks a task holding live calls (it protects itself), but scale in
        # slowly all the same: a task that just emptied is likely to get the next interview.
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=60,
            scale_out_cooldown=Duration.minutes(2),
            scale_in_cooldown=Duration.minutes(15),
        )

    # API Gateway ---------------------------------------------------------------------------

    def _http_api(
        self,
    ) -> tuple[apigwv2.HttpApi, apigwv2.HttpStage, apigwv2.HttpRoute, apigwv2.HttpRoute]:
        link_security_group = ec2.SecurityGroup(
            self,
            "VpcLinkSecurityGroup",
            vpc=self.vpc,
            description="API Gateway VPC link: to the internal ALB only",
            allow_all_outbound=False,
        )
        self.load_balancer.connections.allow_from(
            link_security_group, ec2.Port.tcp(80), "API Gateway VPC link"
        )
        vpc_link = apigwv2.VpcLink(
            self,
            "VpcLink",
            vpc=self.vpc,
            subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[link_security_group],
        )
        http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name="spool-interview",
            description="Spool Interview API: /api/interview/* to the internal ALB",
            create_default_stage=False,
            cors_preflight=apigwv2.CorsPreflightOptions(
                allow_origins=self.settings.cors_origins,
                # As the app's own CORS (app.py CORS_METHODS, CORS_HEADERS).
                allow_methods=[
                    apigwv2.CorsHttpMethod.GET,
                    apigwv2.CorsHttpMethod.POST,
                    apigwv2.CorsHttpMethod.DELETE,
                    apigwv2.CorsHttpMethod.OPTIONS,
                ],
                allow_headers=["authorization", "content-type", "last-event-id", "idempotency-key"],
                expose_headers=["retry-after"],
                # The web client sends credentials (fetch with credentials: "include"; the ALB's
                # stickiness cookie, when switched on); that requires named origins, never "*".
                allow_credentials=True,
                max_age=Duration.hours(1),
            ),
        )
        access_logs = logs.LogGroup(
            self,
            "ApiAccessLogs",
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.RETAIN,
        )
        stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=http_api,
            stage_name="$default",
            auto_deploy=True,
            # Per-route metrics: the latency alarm watches the API route without the long
            # events stream.
            detailed_metrics_enabled=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=self.settings.api_rate_limit,
                burst_limit=self.settings.api_burst_limit,
            ),
            access_log_settings=AccessLogSettings(
                apigwv2.LogGroupLogDestination(access_logs),
                apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
            ),
        )
        integration = integrations.HttpAlbIntegration(
            "Alb", self.listener, vpc_link=vpc_link, method=apigwv2.HttpMethod.ANY
        )
        (api_route,) = http_api.add_routes(
            path=API_ROUTE_PATH, methods=[apigwv2.HttpMethod.ANY], integration=integration
        )
        (events_route,) = http_api.add_routes(
            path=EVENTS_ROUTE_PATH, methods=[apigwv2.HttpMethod.GET], integration=integration
        )
        for route in (api_route, events_route):
            acknowledge(
                route,
                "AwsSolutions-APIG4",
                "The service authenticates every session route itself (bearer token from "
                "/start, only its hash stored; unknown and wrong tokens both 404); /health and "
                "/plans are public by design. Put an authorizer here if /start must be limited.",
            )
        return http_api, stage, api_route, events_route

    # Alarms --------------------------------------------------------------------------------

    def _alarm_topic(self) -> sns.Topic:
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="Spool Interview alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # CloudWatch publishes to an encrypted topic only if the key lets it.
        key.grant(
            iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*"
        )
        topic = sns.Topic(
            self, "AlarmTopic", display_name="Spool Interview alarms", master_key=key,
            enforce_ssl=True,
        )  # fmt: skip
        if self.settings.alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(self.settings.alarm_email))
        return topic

    def _alarms(self) -> None:
        five_minutes = Duration.minutes(5)
        alb = self.load_balancer.metrics
        target = self.target_group.metrics
        api_dimensions = {"ApiId": self.http_api.api_id, "Stage": "$default"}
        alarms = [
            cloudwatch.Alarm(
                self,
                "TargetErrors",
                alarm_description="The interview service answered 5xx (target 5xx at the ALB)",
                metric=target.http_code_target(
                    elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=five_minutes, statistic="Sum"
                ),
                threshold=5,
                evaluation_periods=1,
            ),
            cloudwatch.Alarm(
                self,
                "LoadBalancerErrors",
                alarm_description="The ALB itself answered 5xx (no healthy task, timeouts)",
                metric=alb.http_code_elb(
                    elbv2.HttpCodeElb.ELB_5XX_COUNT, period=five_minutes, statistic="Sum"
                ),
                threshold=5,
                evaluation_periods=1,
            ),
            cloudwatch.Alarm(
                self,
                "UnhealthyTasks",
                alarm_description="A task failed its health checks for 15 minutes",
                metric=target.unhealthy_host_count(period=five_minutes, statistic="Maximum"),
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=3,
            ),
            cloudwatch.Alarm(
                self,
                "ApiErrors",
                alarm_description="API Gateway answered 5xx (integration errors, VPC link)",
                metric=cloudwatch.Metric(
                    namespace="AWS/ApiGateway",
                    metric_name="5xx",
                    dimensions_map=api_dimensions,
                    period=five_minutes,
                    statistic="Sum",
                ),
                threshold=5,
                evaluation_periods=1,
            ),
            # p95 of every request but the events stream: an LLM turn's budget is 8 s, an offer
            # takes well under 1 s; sustained 5 s means replies are stalling.
            cloudwatch.Alarm(
                self,
                "ApiLatency",
                alarm_description="p95 latency of the API route (events stream excluded) > 5 s",
                metric=cloudwatch.Metric(
                    namespace="AWS/ApiGateway",
                    metric_name="IntegrationLatency",
                    dimensions_map={**api_dimensions, "Route": f"ANY {API_ROUTE_PATH}"},
                    period=five_minutes,
                    statistic="p95",
                ),
                threshold=5000,
                evaluation_periods=3,
            ),
            cloudwatch.Alarm(
                self,
                "TargetLatency",
                alarm_description=(
                    "p99 target response time near API Gateway's 30 s limit: requests are hanging"
                ),
                metric=target.target_response_time(period=five_minutes, statistic="p99"),
                threshold=28,
                evaluation_periods=3,
            ),
        ]
        for alarm in alarms:
            alarm.add_alarm_action(cw_actions.SnsAction(self.alarm_topic))
            alarm.add_ok_action(cw_actions.SnsAction(self.alarm_topic))


# JSON lines with the fields needed to trace a request through the ALB and the service; no
# headers, so no bearer token is ever logged.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "method": "$context.httpMethod",
    "routeKey": "$context.routeKey",
    "path": "$context.path",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationStatus": "$context.integrationStatus",
    "integrationError": "$context.integrationErrorMessage",
    "throttled": "$context.error.messageString",
}


@jsii.implements(apigwv2.IAccessLogSettings)
class AccessLogSettings:
    """apigwv2.IAccessLogSettings is a jsii interface, not a struct: a dict is refused."""

    def __init__(
        self, destination: apigwv2.IAccessLogDestination, log_format: apigw.AccessLogFormat
    ) -> None:
        self._destination = destination
        self._format = log_format

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return self._format
