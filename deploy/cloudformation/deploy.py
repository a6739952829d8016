#!/usr/bin/env python3
"""Creates or updates the provisioner stack from provisioner.json and prints its outputs.

    python3 deploy/cloudformation/deploy.py [--stack-name provisioner] [--region R]
        [--checkpoint-bucket BUCKET] [--log-retention-days 30]

Credentials and region come from the usual AWS environment (profile, role, AWS_REGION); the
caller needs CloudFormation and IAM rights to create named roles (CAPABILITY_NAMED_IAM).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "provisioner.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="deploy.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack-name", default="provisioner")
    p.add_argument("--region")
    p.add_argument("--checkpoint-bucket", default="")
    p.add_argument("--log-retention-days", type=int, default=30)
    a = p.parse_args(argv)
    import boto3
    import botocore.exceptions
    cfn = boto3.client("cloudformation", region_name=a.region)
    params = [{"ParameterKey": "CheckpointBucket", "ParameterValue": a.checkpoint_bucket},
              {"ParameterKey": "LogRetentionDays", "ParameterValue": str(a.log_retention_days)}]
    request = dict(StackName=a.stack_name, TemplateBody=TEMPLATE.read_text(), Parameters=params,
                   Capabilities=["CAPABILITY_NAMED_IAM"])
    try:
        try:
            cfn.describe_stacks(StackName=a.stack_name)
            exists = True
        except botocore.exceptions.ClientError:
            exists = False
        if exists:
            try:
                cfn.update_stack(**request)
            except botocore.exceptions.ClientError as exc:
                if "No updates are to be performed" not in str(exc):
                    raise
            cfn.get_waiter("stack_update_complete").wait(StackName=a.stack_name)
        else:
            cfn.create_stack(**request)
            cfn.get_waiter("stack_create_complete").wait(StackName=a.stack_name)
        stack = cfn.describe_stacks(StackName=a.stack_name)["Stacks"][0]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        print(f"deploy.py: error: stack {a.stack_name}: {exc}", file=sys.stderr)
        return 1
    print(f"stack {a.stack_name}: {stack['StackStatus']}")
    for output in stack.get("Outputs", []):
        print(f"  {output['OutputKey']}: {output['OutputValue']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
