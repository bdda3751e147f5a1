"""parse_aws_events: GuardDuty, Security Hub, Health and Trusted Advisor payloads."""

from __future__ import annotations

import copy
import json
from typing import Any, NamedTuple

import pytest
from helpers import CORPUS

from responder.exceptions import SignalMalformed
from responder.signals.aws import (
    DEFAULT_HEALTH_RISK_CODES,
    MAX_EVENTS,
    NO_KEY_REASON,
    SAMPLE_REASON,
    parse_aws_events,
)
from responder.store.models import SignalStatus

GUARDDUTY = CORPUS / "guardduty"
HEALTH = CORPUS / "health"
PANTHER_STEM = "panther-analysis_aws_guardduty_rules_test-findings"
PANTHER = GUARDDUTY / f"{PANTHER_STEM}.ndjson"
PANTHER_INDEX = GUARDDUTY / f"{PANTHER_STEM}.index.json"
ASN_CALLER = (
    "awsdemo-2018_eventbridge-from-sns-Message_"
    "UnauthorizedAccess_IAMUser_UnusualASNCaller.json"
)
RISK_EVENT = "aws-health-tools_readme_AWS_RISK_CREDENTIALS_EXPOSED_test-event.json"
TA_EVENT = (
    "trusted-advisor-tools_readme_eventbridge_"
    "Exposed-Access-Keys_check-item-detail.json"
)

AKIA = "AKIAIOSFODNN7EXAMPLE"
ASIA = "ASIAEXAMPLEKEY000001"
ACCEPTED = SignalStatus.ACCEPTED
IGNORED = SignalStatus.IGNORED
PERSON = SignalStatus.NEEDS_PERSON
# The shape of a secret access key (AWS's documented example value).
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


class Want(NamedTuple):
    """One expected signal: status, key, account, kind and a piece of the reason."""

    status: SignalStatus
    key: str | None
    account: str | None
    kind: str
    reason: str


def sample(account: str, finding_type: str) -> Want:
    return Want(IGNORED, None, account, f"guardduty.{finding_type}", SAMPLE_REASON)


def not_risk(account: str, code: str) -> Want:
    return Want(IGNORED, None, account, f"health.{code}", "is not a risk event")


# Every corpus file, with what it must give, in order; written out, not computed.
EXPECTED_FILES: dict[str, list[Want]] = {
    "guardduty/awsdemo-2018_eventbridge-from-sns-Message_"
    "Stealth_IAMUser_LoggingConfigurationModified.json": [
        sample("785665517223", "Stealth:IAMUser/LoggingConfigurationModified")
    ],
    "guardduty/awsdemo-2018_eventbridge-from-sns-Message_"
    "Trojan_EC2_DNSDataExfiltration.json": [
        sample("785665517223", "Trojan:EC2/DNSDataExfiltration")
    ],
    "guardduty/awsdemo-2018_eventbridge-from-sns-Message_"
    "UnauthorizedAccess_EC2_RDPBruteForce.json": [
        sample("785665517223", "UnauthorizedAccess:EC2/RDPBruteForce")
    ],
    "guardduty/awsdemo-2018_eventbridge-from-sns-Message_"
    "UnauthorizedAccess_EC2_SSHBruteForce.json": [
        sample("785665517223", "UnauthorizedAccess:EC2/SSHBruteForce")
    ],
    f"guardduty/{ASN_CALLER}": [
        sample("785665517223", "UnauthorizedAccess:IAMUser/UnusualASNCaller")
    ],
    "guardduty/awsdemo-2018_eventbridge_sample-finding_"
    "Stealth_IAMUser_LoggingConfigurationModified.json": [
        sample("957132980467", "Stealth:IAMUser/LoggingConfigurationModified")
    ],
    "guardduty/awsdemo-2018_eventbridge_sample-finding_"
    "Trojan_EC2_DNSDataExfiltration.json": [
        sample("957132980467", "Trojan:EC2/DNSDataExfiltration")
    ],
    "guardduty/awsdemo-2018_eventbridge_sample-finding_"
    "UnauthorizedAccess_EC2_RDPBruteForce.json": [
        sample("957132980467", "UnauthorizedAccess:EC2/RDPBruteForce")
    ],
    "guardduty/awsdemo-2018_eventbridge_sample-finding_"
    "UnauthorizedAccess_EC2_SSHBruteForce.json": [
        sample("957132980467", "UnauthorizedAccess:EC2/SSHBruteForce")
    ],
    "guardduty/awsdemo-2018_eventbridge_sample-finding_"
    "UnauthorizedAccess_IAMUser_UnusualASNCaller.json": [
        sample("957132980467", "UnauthorizedAccess:IAMUser/UnusualASNCaller")
    ],
    "guardduty/cloud-custodian_cwe_Backdoor_EC2_CCActivity.B-DNS_"
    "sample_debug-key_envelope-account-mismatch.json": [
        sample("883606788610", "Backdoor:EC2/C&CActivity.B!DNS")
    ],
    "guardduty/cloud-custodian_cwe_UnauthorizedAccess_IAMUser_TorIPCaller_"
    "sample_asn-int.json": [
        sample("883606788610", "UnauthorizedAccess:IAMUser/TorIPCaller")
    ],
    "guardduty/cloud-custodian_securityhub-custom-action_GuardDuty-ASFF_"
    "IAMUser-ConsoleLogin_AccessKey-null.json": [
        Want(
            PERSON,
            None,
            "644160558196",
            "securityhub.guardduty",
            "lead: user name example-user",
        )
    ],
    "guardduty/community-2023_api-finding_Policy_IAMUser_"
    "RootCredentialUsage_ASIA-root.json": [
        Want(
            ACCEPTED,
            "ASIA5X5CZLUQGWWD3ZGU",
            "111122223333",
            "guardduty.Policy:IAMUser/RootCredentialUsage",
            "names the key",
        )
    ],
    "guardduty/community-2025_cli-get-findings-PascalCase_Policy_IAMUser_"
    "RootCredentialUsage.json": [
        Want(
            ACCEPTED,
            "ASIAWXKILDFG7EAZW4TS",
            "444455556666",
            "guardduty.Policy:IAMUser/RootCredentialUsage",
            "names the key",
        )
    ],
    "guardduty/onug-csnf-doc_api-findings-list_Discovery_IAMUser_AnomalousBehavior_"
    "AssumedRole-ASIA_TRANSCRIBED-underscores-lost.json": [
        Want(
            ACCEPTED,
            "ASIARZOOKWPXR24HLMYM",
            "123456789012",
            "guardduty.Discovery:IAMUser/AnomalousBehavior",
            "names the key",
        )
    ],
    "guardduty/onug-csnf-doc_api-findings-list_Exfiltration_S3_ObjectRead.Unusual_"
    "S3Bucket-with-accessKeyDetails_TRANSCRIBED-underscores-lost.json": [
        Want(
            ACCEPTED,
            "ASIAXSC6MP3A525ZCU2A",
            "123456789012",
            "guardduty.Exfiltration:S3/ObjectRead.Unusual",
            "names the key",
        )
    ],
    "guardduty/pan-lab-2018_eventbridge-detail-only_list_"
    "Root-ASIA-truncated_and_PortProbe.json": [
        Want(
            PERSON,
            None,
            "140651570565",
            "guardduty.Recon:IAMUser/MaliciousIPCaller.Custom",
            "(only 'ASIAIM'); lead: user type Root, user name Root",
        ),
        Want(
            IGNORED,
            None,
            "140651570565",
            "guardduty.Recon:EC2/PortProbeUnprotectedPort",
            NO_KEY_REASON,
        ),
    ],
    # The line index of the ndjson is metadata, not an event: each entry is kept
    # as an unrecognised object (the ndjson lines are checked one by one below).
    f"guardduty/{PANTHER_STEM}.index.json": [
        Want(IGNORED, None, None, "unrecognised", "a JSON object with keys")
    ]
    * 8,
    "health/aws-health-docs_eventbridge-schema_"
    "EC2_RETIREMENT_no-resources-key_entity-status.json": [
        not_risk("123456789012", "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED")
    ],
    "health/aws-health-docs_eventbridge-schema_account-specific_ELB_API_ISSUE.json": [
        not_risk("123456789012", "AWS_ELASTICLOADBALANCING_API_ISSUE")
    ],
    "health/aws-health-docs_eventbridge-schema_"
    "backup-event_EC2_INSTANCE_STORE_backupEvent-true.json": [
        not_risk("123456789012", "AWS_EC2_INSTANCE_STORE_DRIVE_PERFORMANCE_DEGRADED")
    ],
    "health/aws-health-tools_mock_putevents-entries_"
    "EBS_VOLUME_LOST_Detail-as-string.json": [
        Want(IGNORED, None, None, "unrecognised", "source 'awshealth.mock'")
    ],
    f"health/{RISK_EVENT}": [
        Want(
            PERSON,
            None,
            "123456789012",
            "health.AWS_RISK_CREDENTIALS_EXPOSED",
            "names no access key ID among its affected entities",
        )
    ],
    "health/aws-health-tools_sample_putevents-entries_"
    "ECS_TASK_PATCHING_Detail-as-string.json": [
        Want(IGNORED, None, None, "unrecognised", "source 'com.samplevent'")
    ],
    "health/aws-health-tools_sms-notifier_test-event_AWS_EC2_HEALTH_TEST_EVENT.json": [
        not_risk("123456789012", "AWS_EC2_HEALTH_TEST_EVENT")
    ],
    "health/aws-health-tools_test-event_"
    "EC2_INSTANCE_STORE_DRIVE_with-entity-tags.json": [
        not_risk("123456789012", "AWS_EC2_INSTANCE_STORE_DRIVE_PERFORMANCE_DEGRADED")
    ],
    "health/cloud-custodian_cwe_AWS_EC2_PERSISTENT_INSTANCE_RETIREMENT_SCHEDULED_"
    "RFC1123-dates_escaped-newlines.json": [
        not_risk("011122335622", "AWS_EC2_PERSISTENT_INSTANCE_RETIREMENT_SCHEDULED")
    ],
    "health/trusted-advisor-tools_mock_putevents_"
    "Exposed-Access-Keys_Detail-as-string.json": [
        Want(
            IGNORED,
            None,
            None,
            "trustedadvisor.mock",
            "mock source awsmock.trustedadvisor",
        )
    ],
    f"health/{TA_EVENT}": [
        Want(
            PERSON,
            None,
            "111222333444",
            "trustedadvisor.exposed_access_keys",
            "lead: user name test-user",
        )
    ],
}

# Each line of the panther ndjson (numbered as in its index.json).
ATTACK = "guardduty.AttackSequence"
PRIVESC = "guardduty.PrivilegeEscalation:IAMUser/AdministrativePermissions"
EXPECTED_PANTHER_LINES: dict[int, Want] = {
    1: Want(
        IGNORED,
        None,
        "123456789012",
        f"{ATTACK}:IAM/CompromisedCredentials",
        NO_KEY_REASON,
    ),
    2: Want(
        IGNORED, None, "123456789012", f"{ATTACK}:S3/CompromisedData", SAMPLE_REASON
    ),
    3: Want(IGNORED, None, "123456789012", PRIVESC, NO_KEY_REASON),
    4: Want(IGNORED, None, "123456789012", PRIVESC, SAMPLE_REASON),
    5: Want(IGNORED, None, "123456789012", PRIVESC, NO_KEY_REASON),
    6: Want(IGNORED, None, "123456789012", PRIVESC, SAMPLE_REASON),
    7: Want(IGNORED, None, "123456789012", PRIVESC, NO_KEY_REASON),
    8: Want(IGNORED, None, "123456789012", PRIVESC, SAMPLE_REASON),
}

ODD_VALUES: list[Any] = [None, 7, -1.5, "", "true", [], {}, True, "x" * 300]


def load(name: str) -> Any:
    return json.loads((CORPUS / name).read_text())


def panther_lines() -> dict[int, Any]:
    lines = PANTHER.read_text().splitlines()
    return {number: json.loads(text) for number, text in enumerate(lines, start=1)}


def panther_index() -> dict[int, dict[str, Any]]:
    return {entry["line"]: entry for entry in json.loads(PANTHER_INDEX.read_text())}


def corpus_inputs() -> list[Any]:
    inputs = [(name, load(name)) for name in EXPECTED_FILES]
    inputs += [(f"panther line {n}", doc) for n, doc in panther_lines().items()]
    return [pytest.param(name, doc, id=name) for name, doc in inputs]


def outcome(signals) -> list[Want]:
    return [
        Want(s.status, s.access_key_id, s.account_id, s.kind, s.reason) for s in signals
    ]


def assert_outcome(signals, expected: list[Want]) -> None:
    got = outcome(signals)
    assert [w[:4] for w in got] == [w[:4] for w in expected]
    for signal, want in zip(signals, expected, strict=True):
        assert want.reason in signal.reason


def guardduty_event(
    *,
    key: str = AKIA,
    user_type: str = "IAMUser",
    principal: str = "AIDAEXAMPLEUSERID0001",
    user_name: str = "alice",
) -> dict[str, Any]:
    """A real (non-sample) finding event, built from the corpus UnusualASNCaller."""
    event = load(f"guardduty/{ASN_CALLER}")
    detail = event["detail"]
    detail["title"] = f"APIs invoked by {user_name} from an unusual network."
    detail["service"]["additionalInfo"] = {"value": "{}", "type": "default"}
    detail["resource"]["accessKeyDetails"] = {
        "accessKeyId": key,
        "principalId": principal,
        "userType": user_type,
        "userName": user_name,
    }
    return event


def health_event(
    entities: list[str],
    *,
    code: str = "AWS_RISK_CREDENTIALS_EXPOSED",
    page: Any = "1",
    total_pages: Any = "1",
    **detail: Any,
) -> dict[str, Any]:
    """A Health RISK event built from AWS's test event, in the 2022+ schema."""
    event = load(f"health/{RISK_EVENT}")
    event["detail"].update(
        {
            "eventTypeCode": code,
            "eventArn": f"arn:aws:health:global::event/RISK/{code}/{code}_0001",
            "affectedEntities": [{"entityValue": value} for value in entities],
            "page": page,
            "totalPages": total_pages,
            "communicationId": "comm-0001",
            **detail,
        }
    )
    return event


def trusted_advisor_event(
    *, key: str = AKIA, status: str = "ERROR", check: str = "Exposed Access Keys"
) -> dict[str, Any]:
    """The Trusted Advisor exposed-key event of its README, with a real-looking key."""
    event = load(f"health/{TA_EVENT}")
    event["detail"]["check-item-detail"]["Access Key ID"] = key
    event["detail"]["status"] = status
    event["detail"]["check-name"] = check
    return event


def pascal(value: Any) -> Any:
    """Re-key a finding the way the AWS CLI and boto3 print it."""
    if isinstance(value, dict):
        return {k[:1].upper() + k[1:]: pascal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [pascal(item) for item in value]
    return value


def leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Return the path of every value inside `value` (containers included)."""
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            paths += leaf_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += leaf_paths(item, (*prefix, index))
    return paths


def set_path(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    """Return a copy of `document` with the value at `path` replaced."""
    changed = copy.deepcopy(document)
    parent = changed
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return changed


class TestCorpus:
    def test_every_corpus_file_has_an_expectation(self):
        """Each GuardDuty and Health corpus file is listed, so none is skipped."""
        on_disk = {
            f"{path.parent.name}/{path.name}"
            for folder in (GUARDDUTY, HEALTH)
            for path in folder.iterdir()
        }

        assert on_disk - {f"guardduty/{PANTHER.name}"} == set(EXPECTED_FILES)
        assert set(panther_lines()) == set(EXPECTED_PANTHER_LINES)
        assert set(panther_index()) == set(EXPECTED_PANTHER_LINES)

    @pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
    def test_parse_corpus_file_gives_expected_signals(self, name):
        """Each corpus file gives exactly the signals written out for it."""
        signals = parse_aws_events(load(name))

        assert_outcome(signals, EXPECTED_FILES[name])

    @pytest.mark.parametrize("line", sorted(EXPECTED_PANTHER_LINES))
    def test_parse_panther_line_gives_expected_signal(self, line):
        """Each bare finding of the panther ndjson gives its one signal."""
        signals = parse_aws_events(panther_lines()[line])

        assert_outcome(signals, [EXPECTED_PANTHER_LINES[line]])

    @pytest.mark.parametrize("line", sorted(EXPECTED_PANTHER_LINES))
    def test_parse_panther_line_agrees_with_index_on_sample_data(self, line):
        """Lines the index calls "As Sample Data" are samples, the others are not."""
        entry = panther_index()[line]

        signals = parse_aws_events(panther_lines()[line])

        is_sample_test = entry["test_name"].endswith("As Sample Data")
        assert is_sample_test is (entry["expected_result"] is False)
        assert (signals[0].reason == SAMPLE_REASON) is is_sample_test

    @pytest.mark.parametrize(("name", "document"), corpus_inputs())
    def test_parse_corpus_leaves_input_unchanged(self, name, document):
        """Parsing reads the payload and never changes it."""
        before = copy.deepcopy(document)

        parse_aws_events(document)

        assert document == before

    @pytest.mark.parametrize(("name", "document"), corpus_inputs())
    def test_parse_corpus_with_odd_values_never_raises(self, name, document):
        """Any value of a corpus payload replaced by an odd type is read as absent."""
        failures = []
        for path in leaf_paths(document):
            for odd in ODD_VALUES:
                changed = set_path(document, path, odd)
                try:
                    signals = parse_aws_events(changed)
                    json.dumps([s.details for s in signals], allow_nan=False)
                except Exception as exc:  # collect every failure, then report them all
                    failures.append((path, odd, repr(exc)))
                    continue
                if not signals:
                    failures.append((path, odd, "no signal"))

        assert failures == []

    @pytest.mark.parametrize(("name", "document"), corpus_inputs())
    def test_parse_corpus_twice_gives_same_delivery_ids(self, name, document):
        """A redelivery of the same payload maps onto the same stored signals."""
        first = [s.delivery_id for s in parse_aws_events(document)]

        again = [s.delivery_id for s in parse_aws_events(copy.deepcopy(document))]

        assert first == again


class TestGuardDuty:
    def test_parse_real_iamuser_akia_finding_is_accepted_with_details(self):
        """A real IAMUser finding names its key, account and the finding's facts."""
        event = guardduty_event()

        [signal] = parse_aws_events(event)

        assert signal.source == "guardduty"
        assert signal.status is ACCEPTED
        assert signal.access_key_id == AKIA
        assert signal.account_id == "785665517223"
        assert signal.kind == "guardduty.UnauthorizedAccess:IAMUser/UnusualASNCaller"
        assert signal.delivery_id == "785665517223:b8b37a7d5503c46a72d875e4293efd33"
        assert signal.repeatable is True
        assert signal.details == {
            "finding_id": "b8b37a7d5503c46a72d875e4293efd33",
            "finding_type": "UnauthorizedAccess:IAMUser/UnusualASNCaller",
            "finding_arn": event["detail"]["arn"],
            "severity": 8,
            "title": "APIs invoked by alice from an unusual network.",
            "region": "us-east-1",
            "resource_type": "AccessKey",
            "user_type": "IAMUser",
            "principal_id": "AIDAEXAMPLEUSERID0001",
            "user_name": "alice",
            "count": 2,
            "updated_at": "2018-11-08T20:21:59Z",
            "first_seen": "2018-11-08T20:19:20Z",
            "last_seen": "2018-11-08T20:21:59Z",
            "event_id": "adf4dbb4-94dd-eaea-a076-b952733f0a6f",
            "account_id": "785665517223",
        }

    def test_parse_assumed_role_asia_key_records_role_session(self):
        """An AssumedRole principal `AROA...:session` gives role_id and session_name."""
        event = guardduty_event(
            key=ASIA,
            user_type="AssumedRole",
            principal="AROAEXAMPLEROLEID00001:attacker-session",
            user_name="deploy-role",
        )

        [signal] = parse_aws_events(event)

        assert signal.status is ACCEPTED
        assert signal.access_key_id == ASIA
        assert signal.details["user_type"] == "AssumedRole"
        assert signal.details["role_id"] == "AROAEXAMPLEROLEID00001"
        assert signal.details["session_name"] == "attacker-session"

    def test_parse_root_key_is_accepted_and_says_root(self):
        """A Root finding names its key; details say Root so containment escalates."""
        event = guardduty_event(
            user_type="Root", principal="785665517223", user_name="Root"
        )

        [signal] = parse_aws_events(event)

        assert signal.status is ACCEPTED
        assert signal.access_key_id == AKIA
        assert signal.details["user_type"] == "Root"
        assert "role_id" not in signal.details

    def test_parse_detail_account_differs_from_envelope_uses_detail_and_keeps_both(
        self,
    ):
        """The finding's account wins over the administrator's envelope account."""
        event = guardduty_event()
        event["account"] = "999999999999"

        [signal] = parse_aws_events(event)

        assert signal.account_id == "785665517223"
        assert signal.delivery_id.startswith("785665517223:")
        assert signal.details["finding_account"] == "785665517223"
        assert signal.details["envelope_account"] == "999999999999"

    def test_parse_missing_detail_account_falls_back_to_envelope(self):
        """Without `detail.accountId` the envelope account is the account."""
        event = guardduty_event()
        event["account"] = "999999999999"
        event["detail"]["accountId"] = 785665517223

        [signal] = parse_aws_events(event)

        assert signal.account_id == "999999999999"
        assert "envelope_account" not in signal.details

    def test_parse_same_finding_with_higher_count_keeps_delivery_id(self):
        """A re-published finding is the same repeatable signal with news in details."""
        first = guardduty_event()
        later = guardduty_event()
        later["id"] = "another-envelope-id"
        later["detail"]["service"]["count"] = 9
        later["detail"]["service"]["eventLastSeen"] = "2018-11-09T02:21:59.713Z"
        later["detail"]["updatedAt"] = "2018-11-09T02:25:00.000Z"

        [one] = parse_aws_events(first)
        [two] = parse_aws_events(later)

        assert one.delivery_id == two.delivery_id
        assert one.repeatable is two.repeatable is True
        assert (one.details["count"], two.details["count"]) == (2, 9)
        assert two.details["last_seen"] == "2018-11-09T02:21:59Z"
        assert two.details["updated_at"] == "2018-11-09T02:25:00Z"

    @pytest.mark.parametrize(
        "additional_info",
        [
            {"sample": True},
            {"sample": "true"},
            {"value": '{"sample":true}', "type": "default"},
            {"Value": '{"sample":"True"}', "Type": "default"},
        ],
    )
    def test_parse_sample_flag_in_any_form_is_ignored(self, additional_info):
        """A sample flag, as a bool, a string or wrapped JSON, marks a test finding."""
        event = guardduty_event()
        event["detail"]["service"]["additionalInfo"] = additional_info

        [signal] = parse_aws_events(event)

        assert signal.status is IGNORED
        assert signal.reason == SAMPLE_REASON
        assert signal.access_key_id is None

    def test_parse_placeholder_values_are_a_sample_without_the_flag(self):
        """`GeneratedFinding*` values alone mark a sample finding."""
        event = guardduty_event(key="GeneratedFindingAccessKeyId")

        [signal] = parse_aws_events(event)

        assert signal.status is IGNORED
        assert signal.reason == SAMPLE_REASON

    @pytest.mark.parametrize("resource", [{"resourceType": "AttackSequence"}, None])
    def test_parse_finding_without_access_key_details_is_ignored(self, resource):
        """A finding about no access key is recorded as ignored, saying so."""
        event = guardduty_event()
        event["detail"]["resource"] = resource

        [signal] = parse_aws_events(event)

        assert signal.status is IGNORED
        assert signal.reason == NO_KEY_REASON
        assert signal.account_id == "785665517223"

    def test_parse_truncated_key_needs_person_with_principal_as_lead(self):
        """A key that is not a full ID is handed to a person, with who used it."""
        event = guardduty_event(key="ASIAIM", user_type="IAMUser", principal="AIDAX1")

        [signal] = parse_aws_events(event)

        assert signal.status is PERSON
        assert signal.access_key_id is None
        assert "(only 'ASIAIM')" in signal.reason
        assert "user type IAMUser, principal AIDAX1, user name alice" in signal.reason

    def test_parse_secret_in_key_field_is_never_echoed(self):
        """A secret access key in the key ID field appears nowhere in the signal."""
        event = guardduty_event(key=SECRET)

        [signal] = parse_aws_events(event)

        assert signal.status is PERSON
        assert SECRET not in repr(signal)

    def test_parse_pascalcase_finding_equals_camelcase(self):
        """A finding printed by the CLI gives the same signal as the API's."""
        finding = guardduty_event(key=ASIA)["detail"]

        camel = parse_aws_events([finding])
        cli = parse_aws_events({"Findings": [pascal(finding)]})

        assert camel[0].status is ACCEPTED
        assert cli == camel

    @pytest.mark.parametrize(
        "wrap",
        [
            lambda d: {"findings": [d]},
            lambda d: {"Findings": [d]},
            lambda d: [d],
            lambda d: d,
            lambda d: [{"detail": d}],
            lambda d: {"detail": json.dumps(d)},
        ],
        ids=["findings", "Findings", "list", "bare", "wrappers", "detail-string"],
    )
    def test_parse_finding_in_any_wrapper_is_accepted(self, wrap):
        """Bare findings, wrapper lists and string details all reach the finding."""
        finding = guardduty_event()["detail"]

        [signal] = parse_aws_events(wrap(finding))

        assert signal.status is ACCEPTED
        assert signal.access_key_id == AKIA
        assert signal.account_id == "785665517223"

    def test_parse_putevents_entries_with_detail_string_is_read(self):
        """`{"Entries": [...]}` with `Detail` as a JSON string is read per entry."""
        event = guardduty_event()
        entry = {
            "Source": "aws.guardduty",
            "DetailType": "GuardDuty Finding",
            "Detail": json.dumps(event["detail"]),
        }

        signals = parse_aws_events({"Entries": [entry, entry]})

        assert [s.access_key_id for s in signals] == [AKIA, AKIA]
        assert signals[0].delivery_id == signals[1].delivery_id

    def test_parse_odd_types_in_finding_are_read_as_absent(self):
        """Strings where numbers belong are read; junk is dropped, not raised on."""
        event = guardduty_event()
        service = event["detail"]["service"]
        service["count"] = "12"
        service["eventFirstSeen"] = "not a time"
        service["eventLastSeen"] = 10**30
        event["detail"]["severity"] = "8.5"
        event["detail"]["title"] = ["not", "text"]

        [signal] = parse_aws_events(event)

        assert signal.status is ACCEPTED
        assert signal.details["count"] == 12
        assert signal.details["severity"] == 8.5
        for absent in ("first_seen", "last_seen", "title"):
            assert absent not in signal.details

    def test_parse_guardduty_event_without_finding_is_ignored(self):
        """Another GuardDuty detail-type is recorded as ignored, naming it."""
        event = {
            "source": "aws.guardduty",
            "detail-type": "GuardDuty Malware Protection Object Scan Result",
            "id": "e-1",
            "account": "111122223333",
            "detail": {"scanStatus": "COMPLETED"},
        }

        [signal] = parse_aws_events(event)

        assert signal.status is IGNORED
        assert "Malware Protection" in signal.reason
        assert signal.delivery_id == "111122223333:e-1"


class TestSecurityHub:
    def asff_event(self, resource_id: str) -> dict[str, Any]:
        event = load(
            "guardduty/cloud-custodian_securityhub-custom-action_GuardDuty-ASFF_"
            "IAMUser-ConsoleLogin_AccessKey-null.json"
        )
        event["detail"]["findings"][0]["Resources"][0]["Id"] = resource_id
        return event

    def test_parse_asff_finding_naming_a_key_is_accepted(self):
        """A relayed GuardDuty finding whose resource names the key ID is accepted."""
        event = self.asff_event(f"AWS::IAM::AccessKey:{ASIA}")

        [signal] = parse_aws_events(event)

        assert signal.source == "securityhub"
        assert signal.status is ACCEPTED
        assert signal.access_key_id == ASIA
        assert signal.account_id == "644160558196"
        assert signal.details["user_names"] == ["example-user"]
        assert signal.details["count"] == 1

    def test_parse_asff_null_key_needs_person_with_user_name(self):
        """`AWS::IAM::AccessKey:null` gives a person the user name to start from."""
        event = self.asff_event("AWS::IAM::AccessKey:null")

        [signal] = parse_aws_events(event)

        assert signal.status is PERSON
        assert signal.access_key_id is None
        assert "lead: user name example-user" in signal.reason

    def test_parse_bare_asff_findings_list_is_read(self):
        """`{"Findings": [...]}` from `securityhub get-findings` is read too."""
        finding = self.asff_event(f"AWS::IAM::AccessKey:{AKIA}")["detail"]["findings"][
            0
        ]

        [signal] = parse_aws_events({"Findings": [finding]})

        assert signal.status is ACCEPTED
        assert signal.access_key_id == AKIA


class TestHealth:
    def test_parse_two_pages_with_one_key_each_gives_two_signals(self):
        """Each page of a multi-page event adds its own key under its own ID."""
        page_one = health_event([AKIA], page="1", total_pages="2")
        page_two = health_event([ASIA], page=2, total_pages=2)

        first = parse_aws_events(page_one)
        second = parse_aws_events(page_two)

        assert [s.access_key_id for s in first + second] == [AKIA, ASIA]
        assert all(s.status is ACCEPTED for s in first + second)
        assert first[0].delivery_id != second[0].delivery_id
        assert first[0].delivery_id.endswith(f":123456789012:{AKIA}")
        assert (second[0].details["page"], second[0].details["total_pages"]) == (2, 2)
        assert first[0].details["page"] == 1

    def test_parse_redelivered_page_is_a_duplicate(self):
        """The same page twice maps onto the same delivery ID."""
        page = health_event([AKIA, ASIA])

        first = parse_aws_events(page)
        again = parse_aws_events(copy.deepcopy(page))

        assert [s.delivery_id for s in first] == [s.delivery_id for s in again]
        assert len({s.delivery_id for s in first}) == 2

    def test_parse_unknown_risk_code_needs_person(self):
        """A RISK code not configured is never dropped: a person must read it."""
        event = health_event([AKIA], code="AWS_RISK_ACCOUNT_CONSOLE_COMPROMISE")

        [signal] = parse_aws_events(event)

        assert signal.status is PERSON
        assert signal.reason == (
            "unknown AWS Health RISK code AWS_RISK_ACCOUNT_CONSOLE_COMPROMISE:"
            " a person must read it"
        )
        assert signal.details["access_key_ids"] == [AKIA]

    def test_parse_configured_codes_decide_what_is_accepted(self):
        """A code added to `health_codes` is accepted; one removed goes to a person."""
        event = health_event([AKIA], code="AWS_RISK_ACCOUNT_CONSOLE_COMPROMISE")
        codes = DEFAULT_HEALTH_RISK_CODES | {"AWS_RISK_ACCOUNT_CONSOLE_COMPROMISE"}

        [added] = parse_aws_events(event, health_codes=codes)
        [removed] = parse_aws_events(health_event([AKIA]), health_codes=frozenset())

        assert added.status is ACCEPTED
        assert removed.status is PERSON

    @pytest.mark.parametrize("code", sorted(DEFAULT_HEALTH_RISK_CODES))
    def test_parse_each_default_code_is_accepted(self, code):
        """Every code real leaks have arrived under is acted on by default."""
        [signal] = parse_aws_events(health_event([AKIA], code=code))

        assert signal.status is ACCEPTED
        assert signal.kind == f"health.{code}"

    def test_parse_affected_account_and_rfc1123_time_are_read(self):
        """The organisational view's affected account wins; RFC 1123 becomes ISO."""
        event = health_event(
            [AKIA, "arn:aws:iam::210987654321:user/alice"],
            affectedAccount="210987654321",
            startTime="Tue, 7 Feb 2017 00:55:52 GMT",
        )

        [signal] = parse_aws_events(event)

        assert signal.account_id == "210987654321"
        assert signal.details["affected_account"] == "210987654321"
        assert signal.details["start_time"] == "2017-02-07T00:55:52Z"
        assert signal.details["communication_id"] == "comm-0001"
        assert signal.details["other_entities"] == [
            "arn:aws:iam::210987654321:user/alice"
        ]

    def test_parse_secret_shaped_entity_is_redacted(self):
        """An entity that looks like a secret access key is never kept."""
        event = health_event([AKIA, SECRET])

        [signal] = parse_aws_events(event)

        assert signal.details["other_entities"] == ["[redacted]"]
        assert SECRET not in repr(signal)

    def test_parse_non_risk_event_is_ignored(self):
        """A Health event of another service is recorded as ignored."""
        event = health_event([AKIA], code="AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED")
        event["detail"]["service"] = "EC2"

        [signal] = parse_aws_events(event)

        assert signal.status is IGNORED
        assert "is not a risk event" in signal.reason


class TestTrustedAdvisor:
    @pytest.mark.parametrize("status", ["ERROR", "WARN", "warning"])
    def test_parse_alert_with_key_is_accepted(self, status):
        """A red or yellow exposed-key item names its key in the envelope account."""
        event = trusted_advisor_event(status=status)

        [signal] = parse_aws_events(event)

        assert signal.source == "trustedadvisor"
        assert signal.status is ACCEPTED
        assert signal.access_key_id == AKIA
        assert signal.account_id == "111222333444"
        assert signal.details["deadline"] == "2015-08-24T21:54:59Z"
        assert signal.details["user_name"] == "test-user"

    def test_parse_ok_status_is_ignored(self):
        """An item back to OK is recorded, not acted on."""
        [signal] = parse_aws_events(trusted_advisor_event(status="OK"))

        assert signal.status is IGNORED
        assert "cleared" in signal.reason

    def test_parse_unknown_status_needs_person(self):
        """A status this service does not know is handed to a person."""
        [signal] = parse_aws_events(trusted_advisor_event(status="PURPLE"))

        assert signal.status is PERSON
        assert "unknown Trusted Advisor status 'PURPLE'" in signal.reason

    def test_parse_other_check_is_ignored(self):
        """Checks other than Exposed Access Keys are recorded as ignored."""
        [signal] = parse_aws_events(trusted_advisor_event(check="Security Groups"))

        assert signal.status is IGNORED
        assert "'Security Groups'" in signal.reason


class TestGarbage:
    @pytest.mark.parametrize(
        ("payload", "named"),
        [
            (7, "number"),
            (1.5, "number"),
            ("text", "string"),
            (None, "null"),
            (True, "boolean"),
        ],
    )
    def test_parse_json_that_is_no_object_or_list_is_malformed(self, payload, named):
        """A scalar is a 400 that says what arrived."""
        with pytest.raises(SignalMalformed, match=f"not {named}") as caught:
            parse_aws_events(payload)

        assert caught.value.status_code == 400

    @pytest.mark.parametrize(
        ("payload", "shape"),
        [
            ({}, "an empty JSON object"),
            ([], "no events"),
            ({"Entries": []}, "no events"),
            ({"hello": "world"}, "keys ['hello']"),
        ],
    )
    def test_parse_unknown_json_is_one_ignored_signal(self, payload, shape):
        """Well-formed JSON of no known shape is recorded once, saying what it was."""
        [signal] = parse_aws_events(payload)

        assert signal.status is IGNORED
        assert signal.source == "aws"
        assert shape in signal.reason

    def test_parse_list_of_scalars_gives_one_ignored_signal_each(self):
        """Every item of a list is accounted for, even when it is not an event."""
        signals = parse_aws_events([1, "x", None])

        assert [s.status for s in signals] == [IGNORED] * 3
        assert "a JSON string where an event was" in signals[1].reason

    def test_parse_unknown_source_is_ignored_naming_it(self):
        """An event from another source is recorded as ignored with its source."""
        event = {"source": "aws.ec2", "detail-type": "EC2 State", "id": "e-9"}

        [signal] = parse_aws_events(event)

        assert signal.status is IGNORED
        assert "source 'aws.ec2'" in signal.reason
        assert signal.delivery_id == "unknown:e-9"

    def test_parse_detail_string_that_is_not_json_is_ignored(self):
        """A known source whose detail string is not JSON is recorded, not raised."""
        event = {"source": "aws.health", "detail": "{oops", "id": "e-2"}

        [signal] = parse_aws_events(event)

        assert signal.status is IGNORED
        assert signal.source == "health"
        assert "not a JSON object" in signal.reason

    def test_parse_exactly_max_events_is_read(self):
        """A payload of MAX_EVENTS events is within bounds."""
        signals = parse_aws_events([{}] * MAX_EVENTS)

        assert len(signals) == MAX_EVENTS

    @pytest.mark.parametrize(
        "payload",
        [
            [{}] * (MAX_EVENTS + 1),
            {"Entries": [{}] * (MAX_EVENTS + 1)},
            health_event([AKIA] * (MAX_EVENTS + 1)),
        ],
        ids=["events", "entries", "health-entities"],
    )
    def test_parse_beyond_max_is_malformed(self, payload):
        """More than MAX_EVENTS events or entities in one payload is refused."""
        with pytest.raises(SignalMalformed, match=f"more than {MAX_EVENTS}"):
            parse_aws_events(payload)
