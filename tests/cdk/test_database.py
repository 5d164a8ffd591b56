"""PostgreSQL: encrypted, isolated subnets, credentials in its generated secret, one client."""

from __future__ import annotations

from tests.cdk.conftest import Synth


def test_postgres_is_encrypted_private_and_protected(external_turn: Synth) -> None:
    database = external_turn.only("AWS::RDS::DBInstance")
    assert database["Engine"] == "postgres"
    assert database["StorageEncrypted"] is True
    assert database["PubliclyAccessible"] is False
    assert database["MultiAZ"] is True
    assert database["DeletionProtection"] is True
    assert database["DBName"] == "spool"
    subnet_group = external_turn.only("AWS::RDS::DBSubnetGroup")
    assert all("database" in subnet["Ref"] for subnet in subnet_group["SubnetIds"])
    isolated = [
        name
        for name, subnet in external_turn.resources("AWS::EC2::Subnet").items()
        if "database" in name
    ]
    routes = external_turn.resources("AWS::EC2::Route").values()
    # Isolated: no route table of these subnets leads anywhere outside the VPC.
    assert isolated
    assert not any("database" in route["Properties"]["RouteTableId"]["Ref"] for route in routes)


def test_database_credentials_are_generated_into_its_secret(external_turn: Synth) -> None:
    database = external_turn.only("AWS::RDS::DBInstance")
    assert database["MasterUsername"] == "spool"
    prefix, ref, suffix = database["MasterUserPassword"]["Fn::Join"][1]
    assert (prefix, suffix) == ("{{resolve:secretsmanager:", ":SecretString:password::}}")
    secret = external_turn.raw["Resources"][ref["Ref"]]["Properties"]
    assert secret["GenerateSecretString"]["GenerateStringKey"] == "password"
    assert '"username":"spool"' in secret["GenerateSecretString"]["SecretStringTemplate"]


def test_only_the_service_may_connect(external_turn: Synth) -> None:
    database = external_turn.only("AWS::RDS::DBInstance")
    (group,) = database["VPCSecurityGroups"]
    group_id = group["Fn::GetAtt"][0]
    rules = [
        rule["Properties"]
        for rule in external_turn.resources("AWS::EC2::SecurityGroupIngress").values()
        if rule["Properties"]["GroupId"]["Fn::GetAtt"][0] == group_id
    ]
    assert len(rules) == 1
    (rule,) = rules
    assert rule["SourceSecurityGroupId"]["Fn::GetAtt"][0].startswith("ServiceSecurityGroup")
    assert rule["FromPort"] == rule["ToPort"] == int(database["Port"])
    inline = external_turn.raw["Resources"][group_id]["Properties"]
    assert "SecurityGroupIngress" not in inline
