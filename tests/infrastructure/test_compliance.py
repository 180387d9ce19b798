"""The template as a whole: cfn-lint finds no problem, and cdk-nag's AWS Solutions checks pass or are justified."""

from __future__ import annotations

import csv

from aws_cdk.assertions import Annotations, Match
from cfnlint.api import ManualArgs, lint_file

from tests.infrastructure.conftest import Synthesized

# W3005 (a DependsOn already implied by a GetAtt): CDK makes each function depend on its role and the role's
# default policy, so the policy is in place before the first invocation; the redundancy is CDK's, and harmless.
ACCEPTED_CFN_LINT_RULES = {"W3005"}


def test_cfn_lint_finds_no_errors_or_unexpected_warnings(synthesized: Synthesized) -> None:
    # Given the synthesized template file
    # When cfn-lint checks it for two regions
    matches = lint_file(synthesized.template_file, config=ManualArgs(regions=["us-east-1", "eu-west-1"]))

    # Then there are no errors, and no warnings beyond the ones accepted above
    errors = [str(m) for m in matches if m.rule.id.startswith("E")]
    unexpected = [str(m) for m in matches if not m.rule.id.startswith("E") and m.rule.id not in ACCEPTED_CFN_LINT_RULES]
    assert errors == []
    assert unexpected == []


def test_cdk_nag_reports_no_unsuppressed_errors_or_warnings(synthesized: Synthesized) -> None:
    # Given the stack synthesized with the AWS Solutions checks
    annotations = Annotations.from_stack(synthesized.stack)

    # When the findings are read
    errors = annotations.find_error("*", Match.string_like_regexp("AwsSolutions-.*"))
    warnings = annotations.find_warning("*", Match.string_like_regexp("AwsSolutions-.*"))

    # Then nothing is left unaddressed
    assert [e.entry.data for e in errors] == []
    assert [w.entry.data for w in warnings] == []


def test_cdk_nag_ran_and_every_suppression_has_a_reason(synthesized: Synthesized) -> None:
    # Given cdk-nag's report of the synthesis (its presence shows the checks ran)
    (report,) = synthesized.assembly_dir.glob(f"AwsSolutions-*{synthesized.stack.stack_name}-NagReport.csv")
    with report.open() as f:
        rows = list(csv.DictReader(f))

    # When its outcomes are read
    suppressed = [row for row in rows if row["Compliance"] == "Suppressed"]
    non_compliant = [row for row in rows if row["Compliance"] == "Non-Compliant"]

    # Then rules were evaluated, only suppressed findings remain, and each suppression says why
    assert len(rows) > 20
    assert non_compliant == []
    assert suppressed, "the deliberate suppressions (e.g. AwsSolutions-L1) should show up"
    assert all(len(row["Exception Reason"]) > 40 for row in suppressed)
