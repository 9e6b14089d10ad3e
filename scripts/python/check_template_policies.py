#!/usr/bin/env python3
"""Policy-as-code checks on the SAM template that cfn-lint does not make.

Usage:
    check_template_policies.py [TEMPLATE]     check TEMPLATE (default: template.yaml)
    check_template_policies.py --self-test    prove each check fails on a bad template

Checks (exit 1 with one line per finding, naming the resource, the statement and the action):

1. No Allow statement whose actions include ecs:RunTask, iam:PassRole, any dynamodb: action,
   secretsmanager:GetSecretValue, or a wildcard covering one of them ("*", "ecs:*", "iam:Pass*",
   ...) has Resource "*" (or a list containing "*", in any branch of an Fn::If), or uses
   NotResource. Statements are found in AWS::IAM::Role inline Policies, AWS::IAM::Policy and
   AWS::IAM::ManagedPolicy documents, and SAM function Policies (inline statements).
2. No dynamodb:Scan (listing uses Query on an index), and no SAM policy template that grants
   Scan (DynamoDBCrudPolicy, DynamoDBReadPolicy).
3. Every AWS::DynamoDB::Table (there must be at least one) has DeletionPolicy Retain,
   UpdateReplacePolicy Retain, DeletionProtectionEnabled true and point-in-time recovery on.
4. Every Allow statement granting ecs:RunTask has an `ecs:cluster` condition (our tasks run on
   our cluster only), and every one granting iam:PassRole an `iam:PassedToService` condition
   (the roles go to ECS only): in each function and role that launches tasks.
5. EC2 instance actions (ec2:CreateSnapshots, ec2:CreateSnapshot, ec2:RebootInstances,
   ec2:CreateReplaceRootVolumeTask, ec2:StopInstances, ec2:StartInstances, ec2:TerminateInstances,
   or a wildcard covering one): never on Resource "*" or NotResource, and every Allow statement
   whose Resource may name an instance (`...:instance/...`, or an ARN the check cannot read) has
   an `aws:ResourceTag/<key>` condition: the task acts only on instances carrying the opt-in tag.
6. Every Allow statement granting ec2:CreateTags (or a wildcard covering it) has an
   `ec2:CreateAction` condition: tags go only on what the same call creates.
7. Every Allow statement granting ecs:ListTasks, ecs:DescribeTasks or ecs:StopTask (or a wildcard
   covering one) has an `ecs:cluster` condition: the recovery sweeper and the functions that
   adopt a live task look at our cluster's tasks only.
8. The audit trail cannot be erased: no Allow statement grants dynamodb:DeleteItem or
   dynamodb:BatchWriteItem (records are redacted, never deleted), every dynamodb:UpdateItem grant
   has a `ForAllValues:StringEquals` condition on `dynamodb:Attributes` naming only the
   attributes a status change writes (id, status, doc: never `expires_at`, the dedupe key or an
   index key), and every table has its TTL on `expires_at` (retention).
10. Secrets are read one by one: every Allow statement granting secretsmanager:GetSecretValue
   (or a wildcard covering it) names, in every Fn::If branch, only `!Ref` of template parameters
   whose names end in `SecretArn` (the operator's secrets: the intake token, the Port, GitHub and
   Slack credentials, the notification secrets), or AWS::NoValue: no pattern, no literal ARN.
9. No unused DynamoDB permission: a function built from a binary listed in DYNAMODB_ACTIONS_OF
   (the lifecycle function reads and updates one record; it lists nothing) is granted no other
   DynamoDB action.

The template is loaded with cfn-lint's own YAML loader (short tags !Ref, !Sub, !GetAtt, !If ...
become their long forms), or, without cfn-lint, with PyYAML and an equivalent tag constructor.
"""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path
from typing import Any, Iterator

# Actions whose Resource must never be "*". Patterns in a policy are matched against these
# (lower case), so "ecs:*", "iam:Pass*" and "*" count too.
SENSITIVE_ACTIONS = [
    "ecs:runtask",
    "iam:passrole",
    "secretsmanager:getsecretvalue",
    "dynamodb:getitem",
    "dynamodb:putitem",
    "dynamodb:updateitem",
    "dynamodb:deleteitem",
    "dynamodb:query",
    "dynamodb:scan",
    "dynamodb:batchwriteitem",
    "dynamodb:batchgetitem",
    "dynamodb:conditioncheckitem",
    "dynamodb:deletetable",
]
SCAN_GRANTING_SAM_TEMPLATES = {"DynamoDBCrudPolicy", "DynamoDBReadPolicy"}
# Actions that must carry a condition key (lower case): action -> key.
REQUIRED_CONDITION_KEYS = {
    "ecs:runtask": "ecs:cluster",
    "iam:passrole": "iam:passedtoservice",
}
# EC2 actions that change an instance (lower case): only on opted-in instances.
EC2_INSTANCE_ACTIONS = [
    "ec2:createsnapshots",
    "ec2:createsnapshot",
    "ec2:rebootinstances",
    "ec2:createreplacerootvolumetask",
    "ec2:stopinstances",
    "ec2:startinstances",
    "ec2:terminateinstances",
]
EC2_TAGGING_ACTIONS = ["ec2:createtags"]
# ECS task inspection (lower case): only on our cluster.
ECS_CLUSTER_SCOPED_ACTIONS = ["ecs:listtasks", "ecs:describetasks", "ecs:stoptask"]
# What an UpdateItem may touch: the key and what a status change (or a redaction) writes.
UPDATABLE_ATTRIBUTES = {"id", "status", "doc"}
# The TTL attribute every table must expire records on.
TTL_ATTRIBUTE = "expires_at"
# The DynamoDB actions (lower case) a function built from a binary may be granted, at most.
DYNAMODB_ACTIONS_OF = {
    "lifecycle": {"dynamodb:getitem", "dynamodb:updateitem"},
}
IAM_POLICY_TYPES = {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}
SAM_FUNCTION_TYPES = {"AWS::Serverless::Function"}


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------
def load_template_text(text: str, name: str = "<template>") -> dict:
    """Parse CloudFormation YAML (or JSON) with intrinsic-function tags."""
    try:
        from cfnlint.decode import cfn_yaml  # type: ignore

        data = cfn_yaml.loads(text, name)
    except ImportError:
        data = _load_with_pyyaml(text)
    if not isinstance(data, dict):
        raise ValueError(f"{name}: not a CloudFormation template (top level is not a mapping)")
    return data


def _load_with_pyyaml(text: str) -> Any:
    import yaml  # type: ignore

    class CfnLoader(yaml.SafeLoader):
        pass

    def construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
        name = suffix if suffix == "Ref" or suffix == "Condition" else f"Fn::{suffix}"
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if suffix == "GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    CfnLoader.add_multi_constructor("!", construct)
    return yaml.load(text, Loader=CfnLoader)  # noqa: S506 (SafeLoader subclass)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------
def as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def alternatives(value: Any) -> Iterator[Any]:
    """Every value an `Fn::If` tree can take (both branches, recursively)."""
    if isinstance(value, dict) and len(value) == 1 and "Fn::If" in value:
        args = value["Fn::If"]
        if isinstance(args, list) and len(args) == 3:
            yield from alternatives(args[1])
            yield from alternatives(args[2])
            return
    yield value


def flat_values(value: Any) -> Iterator[Any]:
    """Scalars (or intrinsic dicts) of a value that may be a list, with Fn::If expanded."""
    for alt in alternatives(value):
        if isinstance(alt, list):
            for item in alt:
                yield from flat_values(item)
        else:
            yield alt


def is_star(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip() == "*"
    if isinstance(value, dict) and len(value) == 1 and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        text = sub[0] if isinstance(sub, list) and sub else sub
        return isinstance(text, str) and text.strip() == "*"
    return False


def covered_sensitive(action: Any) -> list[str]:
    """The sensitive actions an action pattern grants."""
    if not isinstance(action, str):
        return []
    pattern = action.strip().lower()
    hits = [a for a in SENSITIVE_ACTIONS if fnmatch.fnmatchcase(a, pattern)]
    if pattern.startswith("dynamodb:") and not hits:
        hits = [pattern]
    return hits


def statements_of(document: Any) -> Iterator[tuple[str, Any]]:
    """(label, statement) for each statement of a policy document (Fn::If expanded)."""
    if not isinstance(document, dict):
        return
    for index, stmt in enumerate(as_list(document.get("Statement"))):
        for alt in alternatives(stmt):
            if isinstance(alt, dict):
                sid = alt.get("Sid")
                yield (f"Statement[{index}]" + (f" ({sid})" if isinstance(sid, str) else ""), alt)


def iter_policy_statements(template: dict) -> Iterator[tuple[str, str, Any]]:
    """(resource name, where, statement) for every IAM statement the template declares."""
    resources = template.get("Resources") or {}
    for name, res in resources.items():
        if not isinstance(res, dict):
            continue
        rtype = res.get("Type")
        props = res.get("Properties") or {}
        if not isinstance(props, dict):
            continue
        if rtype == "AWS::IAM::Role":
            for i, pol in enumerate(as_list(props.get("Policies"))):
                for alt in alternatives(pol):
                    if isinstance(alt, dict):
                        pname = alt.get("PolicyName", i)
                        for label, stmt in statements_of(alt.get("PolicyDocument")):
                            yield name, f"Policies[{pname}].{label}", stmt
        elif rtype in IAM_POLICY_TYPES:
            for label, stmt in statements_of(props.get("PolicyDocument")):
                yield name, label, stmt
        elif rtype in SAM_FUNCTION_TYPES:
            for i, pol in enumerate(as_list(props.get("Policies"))):
                for alt in alternatives(pol):
                    if isinstance(alt, dict) and "Statement" in alt:
                        for label, stmt in statements_of(alt):
                            yield name, f"Policies[{i}].{label}", stmt


def sam_policy_templates(template: dict) -> Iterator[tuple[str, str]]:
    for name, res in (template.get("Resources") or {}).items():
        if not isinstance(res, dict) or res.get("Type") not in SAM_FUNCTION_TYPES:
            continue
        props = res.get("Properties") or {}
        for pol in as_list(props.get("Policies") if isinstance(props, dict) else None):
            for alt in alternatives(pol):
                if isinstance(alt, dict):
                    for key in alt:
                        if key in SCAN_GRANTING_SAM_TEMPLATES:
                            yield name, key


def condition_keys(condition: Any) -> set[str]:
    """The condition keys (lower case) a statement's Condition tests, in any operator."""
    keys: set[str] = set()
    for alt in alternatives(condition):
        if isinstance(alt, dict):
            for operator in alt.values():
                for op_alt in alternatives(operator):
                    if isinstance(op_alt, dict):
                        keys.update(str(k).strip().lower() for k in op_alt)
    return keys


def attribute_limits(condition: Any) -> list[set[str] | None]:
    """For each alternative of a Condition: the attribute names its
    `ForAllValues:StringEquals` on `dynamodb:Attributes` allows (None: no such test)."""
    out: list[set[str] | None] = []
    for alt in alternatives(condition) if condition is not None else [None]:
        allowed = None
        if isinstance(alt, dict):
            for operator, tests in alt.items():
                if str(operator).strip().lower() != "forallvalues:stringequals":
                    continue
                for t in alternatives(tests):
                    if isinstance(t, dict):
                        for k, v in t.items():
                            if str(k).strip().lower() == "dynamodb:attributes":
                                allowed = {x if isinstance(x, str) else repr(x) for x in flat_values(v)}
        out.append(allowed)
    return out


def is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------
def check_policies(template: dict) -> list[str]:
    errors: list[str] = []
    resources = template.get("Resources") or {}
    for name, where, stmt in iter_policy_statements(template):
        rtype = resources.get(name, {}).get("Type", "?")
        if str(stmt.get("Effect", "")).strip() != "Allow":
            continue
        if "NotAction" in stmt:
            actions = list(flat_values(stmt.get("NotAction")))
            # NotAction grants everything except the listed actions: treat it as "*".
            granted = [("NotAction " + ",".join(map(str, actions)), SENSITIVE_ACTIONS)]
        else:
            granted = [(a, covered_sensitive(a)) for a in flat_values(stmt.get("Action"))]
        granted = [(a, hits) for a, hits in granted if hits]
        if not granted:
            continue
        star = any(is_star(r) for r in flat_values(stmt.get("Resource")))
        not_resource = "NotResource" in stmt
        for action, hits in granted:
            if star:
                errors.append(
                    f"{name} ({rtype}) {where}: action {action} is allowed on Resource \"*\" "
                    f"(covers {', '.join(hits[:3])}{'...' if len(hits) > 3 else ''}); "
                    "scope it to the exact ARNs"
                )
            if not_resource:
                errors.append(
                    f"{name} ({rtype}) {where}: action {action} uses NotResource "
                    "(grants every other resource); list the exact ARNs in Resource"
                )
        if "NotAction" not in stmt:
            tested = condition_keys(stmt.get("Condition"))
            for action, hits in granted:
                for needed_for, key in REQUIRED_CONDITION_KEYS.items():
                    if needed_for in hits and key not in tested:
                        errors.append(
                            f"{name} ({rtype}) {where}: action {action} has no {key} condition "
                            f"(covers {needed_for}); add one"
                        )
        for action, hits in granted:
            for erasing in ("dynamodb:deleteitem", "dynamodb:batchwriteitem"):
                if erasing in hits:
                    errors.append(
                        f"{name} ({rtype}) {where}: action {action} grants {erasing}: records are "
                        "redacted, never deleted (retention is the table's TTL)"
                    )
            if "dynamodb:updateitem" in hits:
                for allowed in attribute_limits(stmt.get("Condition")):
                    if allowed is None:
                        errors.append(
                            f"{name} ({rtype}) {where}: action {action} grants dynamodb:UpdateItem "
                            "without a ForAllValues:StringEquals dynamodb:Attributes condition "
                            f"(allow only {sorted(UPDATABLE_ATTRIBUTES)})"
                        )
                    elif not allowed <= UPDATABLE_ATTRIBUTES:
                        errors.append(
                            f"{name} ({rtype}) {where}: action {action} may update "
                            f"{sorted(allowed - UPDATABLE_ATTRIBUTES)}: only "
                            f"{sorted(UPDATABLE_ATTRIBUTES)} (never the TTL, the dedupe key or an "
                            "index key)"
                        )
        binary = (resources.get(name, {}).get("Metadata") or {}).get("BuildProperties", {})
        binary = binary.get("Binary") if isinstance(binary, dict) else None
        if binary in DYNAMODB_ACTIONS_OF:
            for action, hits in granted:
                extra = sorted(h for h in hits if h.startswith("dynamodb:")
                               and h not in DYNAMODB_ACTIONS_OF[binary])
                if extra:
                    errors.append(
                        f"{name} ({rtype}) {where}: action {action} grants {', '.join(extra)}, "
                        f"which the {binary} function does not use"
                    )
        for action, hits in granted:
            if "dynamodb:scan" in hits and not str(action).startswith("NotAction"):
                errors.append(
                    f"{name} ({rtype}) {where}: action {action} grants dynamodb:Scan; "
                    "listing must use Query on an index"
                )
    for name, tmpl in sam_policy_templates(template):
        errors.append(
            f"{name} (AWS::Serverless::Function) Policies: SAM policy template {tmpl} grants "
            "dynamodb:Scan (and more); write explicit statements instead"
        )
    return errors


def covered(action: Any, actions: list[str]) -> list[str]:
    """The actions of `actions` an action pattern grants."""
    if not isinstance(action, str):
        return []
    pattern = action.strip().lower()
    return [a for a in actions if fnmatch.fnmatchcase(a, pattern)]


def resource_text(value: Any) -> str | None:
    """The ARN text of a Resource entry (a string or an Fn::Sub), or None when unreadable."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1 and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        text = sub[0] if isinstance(sub, list) and sub else sub
        return text if isinstance(text, str) else None
    return None


def may_name_instance(value: Any) -> bool:
    text = resource_text(value)
    return text is None or text.strip() == "*" or ":instance/" in text or text.rstrip().endswith(":*")


def check_ec2(template: dict) -> list[str]:
    errors: list[str] = []
    resources = template.get("Resources") or {}
    for name, where, stmt in iter_policy_statements(template):
        rtype = resources.get(name, {}).get("Type", "?")
        if str(stmt.get("Effect", "")).strip() != "Allow":
            continue
        if "NotAction" in stmt:
            granted = [("NotAction", EC2_INSTANCE_ACTIONS + EC2_TAGGING_ACTIONS)]
        else:
            granted = [(a, covered(a, EC2_INSTANCE_ACTIONS + EC2_TAGGING_ACTIONS))
                       for a in flat_values(stmt.get("Action"))]
        granted = [(a, hits) for a, hits in granted if hits]
        if not granted:
            continue
        tested = condition_keys(stmt.get("Condition"))
        targets = list(flat_values(stmt.get("Resource")))
        for action, hits in granted:
            instance_hits = [h for h in hits if h in EC2_INSTANCE_ACTIONS]
            if instance_hits:
                if "NotResource" in stmt or any(is_star(r) for r in targets):
                    errors.append(
                        f"{name} ({rtype}) {where}: action {action} (covers {instance_hits[0]}) is "
                        "allowed on every resource; scope it to instance/volume/snapshot ARNs"
                    )
                elif any(may_name_instance(r) for r in targets) and not any(
                    k.startswith("aws:resourcetag/") for k in tested
                ):
                    errors.append(
                        f"{name} ({rtype}) {where}: action {action} (covers {instance_hits[0]}) on "
                        "instances has no aws:ResourceTag/<key> condition; only opted-in "
                        "instances may be acted on"
                    )
            if "ec2:createtags" in hits and "ec2:createaction" not in tested:
                errors.append(
                    f"{name} ({rtype}) {where}: action {action} (covers ec2:CreateTags) has no "
                    "ec2:CreateAction condition; tag only what the same call creates"
                )
    return errors


def check_cluster_scoped(template: dict) -> list[str]:
    errors: list[str] = []
    resources = template.get("Resources") or {}
    for name, where, stmt in iter_policy_statements(template):
        if str(stmt.get("Effect", "")).strip() != "Allow" or "NotAction" in stmt:
            continue
        rtype = resources.get(name, {}).get("Type", "?")
        for action in flat_values(stmt.get("Action")):
            if covered(action, ECS_CLUSTER_SCOPED_ACTIONS) and "ecs:cluster" not in condition_keys(
                stmt.get("Condition")
            ):
                errors.append(
                    f"{name} ({rtype}) {where}: action {action} has no ecs:cluster condition; "
                    "look only at our cluster's tasks"
                )
    return errors


def check_tables(template: dict) -> list[str]:
    errors: list[str] = []
    tables = {
        name: res
        for name, res in (template.get("Resources") or {}).items()
        if isinstance(res, dict) and res.get("Type") == "AWS::DynamoDB::Table"
    }
    if not tables:
        return ["no AWS::DynamoDB::Table in the template: the audit table must be declared"]
    for name, res in tables.items():
        props = res.get("Properties") or {}
        for attr in ("DeletionPolicy", "UpdateReplacePolicy"):
            if res.get(attr) != "Retain":
                errors.append(
                    f"{name} (AWS::DynamoDB::Table): {attr} is {res.get(attr)!r}, must be 'Retain' "
                    "(the audit trail must survive stack deletion and replacement)"
                )
        if not is_true(props.get("DeletionProtectionEnabled")):
            errors.append(f"{name} (AWS::DynamoDB::Table): DeletionProtectionEnabled must be true")
        ttl = props.get("TimeToLiveSpecification") or {}
        if not (isinstance(ttl, dict) and is_true(ttl.get("Enabled"))
                and ttl.get("AttributeName") == TTL_ATTRIBUTE):
            errors.append(
                f"{name} (AWS::DynamoDB::Table): TimeToLiveSpecification must be enabled on "
                f"{TTL_ATTRIBUTE!r} (retention is the TTL, not a person's DELETE)"
            )
        pitr = props.get("PointInTimeRecoverySpecification") or {}
        if not (isinstance(pitr, dict) and is_true(pitr.get("PointInTimeRecoveryEnabled"))):
            errors.append(
                f"{name} (AWS::DynamoDB::Table): PointInTimeRecoverySpecification."
                "PointInTimeRecoveryEnabled must be true"
            )
    return errors


def check_secrets(template: dict) -> list[str]:
    errors: list[str] = []
    resources = template.get("Resources") or {}
    parameters = template.get("Parameters") or {}
    for name, where, stmt in iter_policy_statements(template):
        if str(stmt.get("Effect", "")).strip() != "Allow" or "NotAction" in stmt:
            continue
        actions = [a for a in flat_values(stmt.get("Action"))
                   if "secretsmanager:getsecretvalue" in covered_sensitive(a)]
        if not actions:
            continue
        rtype = resources.get(name, {}).get("Type", "?")
        for value in flat_values(stmt.get("Resource")):
            ref = value.get("Ref") if isinstance(value, dict) and len(value) == 1 else None
            if ref == "AWS::NoValue" or (
                isinstance(ref, str) and ref.endswith("SecretArn") and ref in parameters
            ):
                continue
            errors.append(
                f"{name} ({rtype}) {where}: action {actions[0]} on {value!r}: grant secrets only "
                "as !Ref of a *SecretArn parameter"
            )
    return errors


def check(template: dict) -> list[str]:
    return (
        check_policies(template)
        + check_ec2(template)
        + check_cluster_scoped(template)
        + check_tables(template)
        + check_secrets(template)
    )


# ----------------------------------------------------------------------------------------------
# Self-test: each bad template must be caught, the good one must pass
# ----------------------------------------------------------------------------------------------
def _good() -> dict:
    table_arn = {"Fn::GetAtt": ["Table", "Arn"]}
    return {
        "Parameters": {"TokenSecretArn": {"Type": "String"}, "OtherSecretArn": {"Type": "String"}},
        "Resources": {
            "Table": {
                "Type": "AWS::DynamoDB::Table",
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": {
                    "DeletionProtectionEnabled": True,
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                    "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                },
            },
            "Lifecycle": {
                "Type": "AWS::Serverless::Function",
                "Metadata": {"BuildProperties": {"Binary": "lifecycle"}},
                "Properties": {
                    "Policies": [
                        {
                            "Statement": [
                                {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": table_arn},
                                {
                                    "Effect": "Allow",
                                    "Action": "dynamodb:UpdateItem",
                                    "Resource": table_arn,
                                    "Condition": {
                                        "ForAllValues:StringEquals": {"dynamodb:Attributes": ["id", "status", "doc"]}
                                    },
                                },
                            ]
                        }
                    ]
                },
            },
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Policies": [
                        {
                            "PolicyName": "p",
                            "PolicyDocument": {
                                "Statement": [
                                    {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": table_arn},
                                    {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
                                    {"Effect": "Deny", "Action": "*", "Resource": "*"},
                                    {"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"},
                                    {
                                        "Effect": "Allow",
                                        "Action": ["ec2:CreateSnapshots", "ec2:RebootInstances"],
                                        "Resource": {"Fn::Sub": "arn:aws:ec2:r:1:instance/*"},
                                        "Condition": {"StringEquals": {"aws:ResourceTag/opt-in": "true"}},
                                    },
                                    {
                                        "Effect": "Allow",
                                        "Action": "ec2:CreateSnapshots",
                                        "Resource": [{"Fn::Sub": "arn:aws:ec2:r:1:volume/*"},
                                                     {"Fn::Sub": "arn:aws:ec2:r::snapshot/*"}],
                                    },
                                    {
                                        "Effect": "Allow",
                                        "Action": "ec2:CreateTags",
                                        "Resource": {"Fn::Sub": "arn:aws:ec2:r::snapshot/*"},
                                        "Condition": {"StringEquals": {"ec2:CreateAction": "CreateSnapshots"}},
                                    },
                                ]
                            },
                        }
                    ]
                },
            },
            "Fn": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "Policies": [
                        "AWSLambdaBasicExecutionRole",
                        {
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Action": "ecs:RunTask",
                                    "Resource": {"Fn::Sub": "arn:aws:ecs:r:1:task-definition/f:*"},
                                    "Condition": {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": ["C", "Arn"]}}},
                                },
                                {
                                    "Effect": "Allow",
                                    "Action": ["iam:PassRole"],
                                    "Resource": [{"Fn::GetAtt": ["Role", "Arn"]}],
                                    "Condition": {
                                        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
                                    },
                                },
                                {
                                    "Effect": "Allow",
                                    "Action": "secretsmanager:GetSecretValue",
                                    "Resource": [
                                        {"Ref": "TokenSecretArn"},
                                        {"Fn::If": ["C", {"Ref": "OtherSecretArn"}, {"Ref": "AWS::NoValue"}]},
                                    ],
                                },
                            ]
                        },
                    ]
                },
            },
        }
    }


def _role_stmt(t: dict) -> list:
    return t["Resources"]["Role"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]


def _fn_stmt(t: dict) -> list:
    return t["Resources"]["Fn"]["Properties"]["Policies"][1]["Statement"]


def _lifecycle_stmt(t: dict) -> list:
    return t["Resources"]["Lifecycle"]["Properties"]["Policies"][0]["Statement"]


def _bad_cases() -> list[tuple[str, Any, str]]:
    """(description, mutation or YAML text, text the error must contain)."""

    def mut(f):
        return f

    return [
        ("ecs:RunTask on * in a role", mut(lambda t: _role_stmt(t).append(
            {"Effect": "Allow", "Action": "ecs:RunTask", "Resource": "*"})), "Role (AWS::IAM::Role)"),
        ("iam:PassRole on a list holding * in a SAM function", mut(lambda t: _fn_stmt(t).append(
            {"Effect": "Allow", "Action": "iam:PassRole", "Resource": ["arn:aws:iam::1:role/x", "*"]})),
         "Fn (AWS::Serverless::Function)"),
        ("dynamodb action with * in one Fn::If branch", mut(lambda t: _role_stmt(t).append(
            {"Effect": "Allow", "Action": ["dynamodb:Query"],
             "Resource": {"Fn::If": ["C", {"Fn::GetAtt": ["Table", "Arn"]}, "*"]}})), "dynamodb:Query"),
        ("Action * on Resource *", mut(lambda t: _fn_stmt(t).append(
            {"Effect": "Allow", "Action": "*", "Resource": "*"})), "action *"),
        ("ecs:* wildcard on Resource *", mut(lambda t: _role_stmt(t).append(
            {"Effect": "Allow", "Action": "ecs:*", "Resource": "*"})), "action ecs:*"),
        ("ecs:ListTasks without an ecs:cluster condition", mut(lambda t: _fn_stmt(t).append(
            {"Effect": "Allow", "Action": ["ecs:ListTasks"], "Resource": "*"})),
         "ecs:ListTasks has no ecs:cluster condition"),
        ("ecs:Describe* without an ecs:cluster condition", mut(lambda t: _role_stmt(t).append(
            {"Effect": "Allow", "Action": "ecs:Describe*", "Resource": "arn:aws:ecs:r:1:task/c/*"})),
         "ecs:Describe* has no ecs:cluster condition"),
        ("Iam:passrole (case) on *", mut(lambda t: _role_stmt(t).append(
            {"Effect": "Allow", "Action": "Iam:passRole", "Resource": "*"})), "Iam:passRole"),
        ("NotResource with iam:PassRole", mut(lambda t: _role_stmt(t).append(
            {"Effect": "Allow", "Action": "iam:PassRole", "NotResource": "arn:aws:iam::1:role/x"})),
         "NotResource"),
        ("dynamodb:Scan on the table", mut(lambda t: _role_stmt(t).append(
            {"Effect": "Allow", "Action": "dynamodb:Scan", "Resource": {"Fn::GetAtt": ["Table", "Arn"]}})),
         "dynamodb:Scan"),
        ("SAM DynamoDBCrudPolicy", mut(lambda t: t["Resources"]["Fn"]["Properties"]["Policies"].append(
            {"DynamoDBCrudPolicy": {"TableName": {"Ref": "Table"}}})), "DynamoDBCrudPolicy"),
        ("ecs:RunTask without an ecs:cluster condition", mut(lambda t: _fn_stmt(t)[0].pop("Condition")),
         "has no ecs:cluster condition"),
        ("ecs:RunTask with a condition on another key", mut(lambda t: _fn_stmt(t)[0].update(
            {"Condition": {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}})),
         "has no ecs:cluster condition"),
        ("iam:PassRole without iam:PassedToService", mut(lambda t: _fn_stmt(t)[1].pop("Condition")),
         "has no iam:passedtoservice condition"),
        ("ecs:* on the task definition without a condition", mut(lambda t: _role_stmt(t).append(
            {"Effect": "Allow", "Action": "ecs:*", "Resource": {"Fn::Sub": "arn:aws:ecs:r:1:task-definition/f:*"}})),
         "action ecs:* has no ecs:cluster condition"),
        ("ec2:RebootInstances on instances without a tag condition", mut(lambda t: _role_stmt(t)[4].pop(
            "Condition")), "has no aws:ResourceTag/<key> condition"),
        ("ec2:CreateSnapshots on instances with a condition on another key", mut(lambda t: _role_stmt(t)[4].update(
            {"Condition": {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}})),
         "has no aws:ResourceTag/<key> condition"),
        ("ec2:* on Resource *", mut(lambda t: _role_stmt(t).append(
            {"Effect": "Allow", "Action": "ec2:*", "Resource": "*",
             "Condition": {"StringEquals": {"aws:ResourceTag/opt-in": "true"}}})),
         "is allowed on every resource"),
        ("ec2:Reboot* on an ARN the check cannot read", mut(lambda t: _role_stmt(t).append(
            {"Effect": "Allow", "Action": "ec2:Reboot*", "Resource": {"Ref": "SomeArn"}})),
         "has no aws:ResourceTag/<key> condition"),
        ("ec2:CreateTags without ec2:CreateAction", mut(lambda t: _role_stmt(t)[6].pop("Condition")),
         "has no ec2:CreateAction condition"),
        ("table without DeletionPolicy", mut(lambda t: t["Resources"]["Table"].pop("DeletionPolicy")),
         "DeletionPolicy"),
        ("table with UpdateReplacePolicy Delete", mut(lambda t: t["Resources"]["Table"].update(
            {"UpdateReplacePolicy": "Delete"})), "UpdateReplacePolicy"),
        ("table without DeletionProtectionEnabled", mut(lambda t: t["Resources"]["Table"]["Properties"].pop(
            "DeletionProtectionEnabled")), "DeletionProtectionEnabled"),
        ("table with PITR off", mut(lambda t: t["Resources"]["Table"]["Properties"].update(
            {"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": False}})),
         "PointInTimeRecoveryEnabled"),
        ("no table at all", mut(lambda t: t["Resources"].pop("Table")), "no AWS::DynamoDB::Table"),
        ("dynamodb:DeleteItem on the table", mut(lambda t: _role_stmt(t).append(
            {"Effect": "Allow", "Action": "dynamodb:DeleteItem", "Resource": {"Fn::GetAtt": ["Table", "Arn"]}})),
         "grants dynamodb:deleteitem"),
        ("dynamodb:Batch* (BatchWriteItem deletes too)", mut(lambda t: _role_stmt(t).append(
            {"Effect": "Allow", "Action": "dynamodb:Batch*", "Resource": {"Fn::GetAtt": ["Table", "Arn"]}})),
         "grants dynamodb:batchwriteitem"),
        ("UpdateItem without a dynamodb:Attributes condition", mut(lambda t: _lifecycle_stmt(t)[1].pop(
            "Condition")), "without a ForAllValues:StringEquals dynamodb:Attributes condition"),
        ("UpdateItem that may change expires_at", mut(lambda t: _lifecycle_stmt(t)[1]["Condition"][
            "ForAllValues:StringEquals"]["dynamodb:Attributes"].append("expires_at")), "may update ['expires_at']"),
        ("UpdateItem limited with ForAnyValue (allows anything alongside)", mut(lambda t: _lifecycle_stmt(t)[1].update(
            {"Condition": {"ForAnyValue:StringEquals": {"dynamodb:Attributes": ["status"]}}})),
         "without a ForAllValues:StringEquals"),
        ("the lifecycle function granted Query", mut(lambda t: _lifecycle_stmt(t).append(
            {"Effect": "Allow", "Action": "dynamodb:Query", "Resource": {"Fn::GetAtt": ["Table", "Arn"]}})),
         "grants dynamodb:query, which the lifecycle function does not use"),
        ("GetSecretValue on a secret name pattern", mut(lambda t: _fn_stmt(t)[2]["Resource"].append(
            {"Fn::Sub": "arn:aws:secretsmanager:r:1:secret:notify-*"})), "grant secrets only as !Ref"),
        ("secretsmanager:Get* on a parameter that is not a secret ARN", mut(lambda t: _role_stmt(t).append(
            {"Effect": "Allow", "Action": "secretsmanager:Get*", "Resource": {"Ref": "TableName"}})),
         "action secretsmanager:Get* on {'Ref': 'TableName'}"),
        ("GetSecretValue on a literal ARN in one Fn::If branch", mut(lambda t: _fn_stmt(t)[2].update(
            {"Resource": {"Fn::If": ["C", {"Ref": "TokenSecretArn"},
                                     "arn:aws:secretsmanager:r:1:secret:x"]}})), "grant secrets only as !Ref"),
        ("table without TTL", mut(lambda t: t["Resources"]["Table"]["Properties"].pop("TimeToLiveSpecification")),
         "TimeToLiveSpecification"),
        ("table with TTL on another attribute", mut(lambda t: t["Resources"]["Table"]["Properties"].update(
            {"TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True}})), "TimeToLiveSpecification"),
        ("YAML with short tags: !Sub/!GetAtt/!If and dynamodb:* on *", """
Transform: AWS::Serverless-2016-10-31
Conditions:
  C: !Equals [!Ref AWS::Region, us-east-1]
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    DeletionPolicy: Retain
    UpdateReplacePolicy: Retain
    Properties:
      DeletionProtectionEnabled: true
      PointInTimeRecoverySpecification: {PointInTimeRecoveryEnabled: true}
      TimeToLiveSpecification: {AttributeName: expires_at, Enabled: true}
  ApiFunction:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - Statement:
            - Effect: Allow
              Action: ecs:RunTask
              Resource: !Sub "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task-definition/f:*"
              Condition:
                ArnEquals:
                  ecs:cluster: !GetAtt Cluster.Arn
            - Effect: Allow
              Action: dynamodb:*
              Resource: !If [C, !GetAtt Table.Arn, "*"]
""", "ApiFunction (AWS::Serverless::Function) Policies[0].Statement[1]"),
    ]


def self_test() -> int:
    import copy

    failures = 0
    good_errors = check(_good())
    if good_errors:
        print("self-test FAIL: the good template was rejected:", *good_errors, sep="\n  ")
        failures += 1
    else:
        print("self-test ok: good template passes")
    for description, case, expected in _bad_cases():
        if isinstance(case, str):
            template = load_template_text(case, "<self-test>")
        else:
            template = copy.deepcopy(_good())
            case(template)
        errors = check(template)
        if any(expected in e for e in errors):
            print(f"self-test ok: caught {description}: {errors[0]}")
        else:
            print(f"self-test FAIL: not caught: {description} (wanted {expected!r}; got {errors})")
            failures += 1
    total = len(_bad_cases()) + 1
    print(f"{total - failures} passed, {failures} failed")
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if argv[1:2] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if argv[1:2] == ["--self-test"]:
        return self_test()
    path = Path(argv[1] if len(argv) > 1 else "template.yaml")
    try:
        template = load_template_text(path.read_text(encoding="utf-8"), str(path))
    except (OSError, ValueError) as e:
        print(f"ERROR cannot load {path}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # YAML syntax errors of either loader
        print(f"ERROR cannot parse {path}: {e}", file=sys.stderr)
        return 1
    errors = check(template)
    statements = sum(1 for _ in iter_policy_statements(template))
    for e in errors:
        print(f"ERROR {path}: {e}", file=sys.stderr)
    if errors:
        print(f"{path}: {len(errors)} problem(s) in {statements} IAM statements / tables", file=sys.stderr)
        return 1
    print(f"{path}: OK ({statements} IAM statements checked; no wildcard resource on RunTask, "
          "PassRole, DynamoDB or GetSecretValue; RunTask only with ecs:cluster, PassRole only with "
          "iam:PassedToService; EC2 instance actions only with aws:ResourceTag, CreateTags only "
          "with ec2:CreateAction; ListTasks/DescribeTasks only with ecs:cluster; no Scan, "
          "DeleteItem or BatchWriteItem; UpdateItem only on id, status, doc; no unused DynamoDB "
          "action; table retained, protected, PITR and TTL on)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
