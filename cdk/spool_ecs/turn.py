"""The optional TURN server: coturn on one EC2 instance with an Elastic IP (-c turn=true).

Media cannot pass API Gateway or the ALB (they carry HTTP only), and the Fargate tasks sit in
private subnets, so browsers and tasks meet on this relay's public address.
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from spool_ecs.coturn import TurnConfig, boot_script
from spool_ecs.nag import acknowledge

# Canonical's public parameter: Ubuntu 24.04 ships coturn 4.6 (the version the turn/ tests run).
# Resolved by CloudFormation at deploy time, so synthesis needs no AWS account.
UBUNTU_AMI_PARAMETER = (
    "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
)


class TurnServer(Construct):
    """coturn reachable from the internet on its listening, TLS and relay ports only."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        secret: secretsmanager.ISecret,
        config: TurnConfig,
        instance_type: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="coturn: TURN over UDP/TCP, TURN over TLS and the relay port range",
            # Relays send to arbitrary peers and apt needs the archive: outbound stays open.
            allow_all_outbound=True,
        )
        anywhere = ec2.Peer.any_ipv4()
        listening = config.listening_port
        self.security_group.add_ingress_rule(anywhere, ec2.Port.udp(listening), "TURN over UDP")
        self.security_group.add_ingress_rule(anywhere, ec2.Port.tcp(listening), "TURN over TCP")
        self.security_group.add_ingress_rule(
            anywhere, ec2.Port.tcp(config.tls_listening_port), "TURN over TLS"
        )
        self.security_group.add_ingress_rule(
            anywhere, ec2.Port.udp_range(config.min_port, config.max_port), "TURN relay ports"
        )
        acknowledge(
            self.security_group,
            "AwsSolutions-EC23",
            "A TURN server must accept candidates from any address on the internet; only the "
            "TURN listening, TLS and relay ports are open, and coturn itself refuses anyone "
            "without a credential signed with the shared secret (use-auth-secret).",
        )

        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="coturn instance: reads the shared TURN secret at boot",
        )
        secret.grant_read(role)

        self.elastic_ip = ec2.CfnEIP(self, "ElasticIp", domain="vpc")
        self.public_ip = self.elastic_ip.attr_public_ip

        self.instance = ec2.Instance(
            self,
            "Instance",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            instance_type=ec2.InstanceType(instance_type),
            machine_image=ec2.MachineImage.from_ssm_parameter(UBUNTU_AMI_PARAMETER),
            security_group=self.security_group,
            role=role,
            # Session Manager instead of SSH: no key pair, no port 22.
            ssm_session_permissions=True,
            require_imdsv2=True,
            detailed_monitoring=True,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/sda1",
                    volume=ec2.BlockDeviceVolume.ebs(
                        16, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3
                    ),
                )
            ],
            user_data=ec2.UserData.custom(
                boot_script(
                    config,
                    region=Aws.REGION,
                    secret_arn=secret.secret_arn,
                    public_ip=self.public_ip,
                )
            ),
            # A changed config reaches coturn only through a new boot.
            user_data_causes_replacement=True,
        )
        ec2.CfnEIPAssociation(
            self,
            "ElasticIpAssociation",
            allocation_id=self.elastic_ip.attr_allocation_id,
            instance_id=self.instance.instance_id,
        )
        acknowledge(
            self.instance,
            "AwsSolutions-EC29",
            "One stateless relay whose address is the Elastic IP: CloudFormation replaces the "
            "instance when the Ubuntu image or the coturn config changes, which termination "
            "protection would block; nothing on the instance needs keeping.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
            "AmazonSSMManagedInstanceCore]",
            "Session Manager access to the TURN host without SSH keys or an open port 22; the "
            "AWS managed policy is the one Systems Manager documents for this.",
        )
