#!/usr/bin/env python3
"""CDK entry point (``cdk synth`` / ``cdk deploy``). Environment-agnostic: synth needs no AWS credentials."""

from __future__ import annotations

import sys
from typing import Any

from aws_cdk import App, Aspects
from cdk_nag import AwsSolutionsChecks

from infra.config import AWS_CONFIG
from infra.context import ContextError, config_from_context
from infra.layer_build import LayerBuildError
from infra.stack import ServiceStack


def create_app(**app_kwargs: Any) -> App:
    """The app as deployed, with cdk-nag's AWS Solutions checks; the infrastructure tests build it the same way."""
    app = App(**app_kwargs)
    # Deploy-time choices: -c senderEmail=..., runtime, architecture, tracing, snapStart, bedrockModels.
    config = config_from_context(AWS_CONFIG, app.node.try_get_context)
    ServiceStack(
        app,
        config.stack_name,
        config=config,
        description="Serverless background jobs: API Gateway, SQS + DLQ, Lambda, DynamoDB",
    )
    # Findings show up as synth errors/warnings; each accepted one is suppressed next to its resource, with a reason.
    Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return app


if __name__ == "__main__":
    try:
        create_app().synth()
    except (ContextError, LayerBuildError) as exc:  # a bad -c value, or no wheel for the target: say which
        sys.exit(f"cdk synth: {exc}")
