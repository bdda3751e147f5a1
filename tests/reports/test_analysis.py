"""Tests for report v2 analysis: derived keys, techniques, left-behind, open items."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import UTC, datetime

import pytest
from ctfakes import CORPUS, INVICTUS, KEY, record
from structlog.testing import capture_logs

from responder.exceptions import ConfigError
from responder.reports.analysis import (
    MAX_DERIVED_DEPTH,
    TACTIC_ORDER,
    classify,
    load_rules,
    parse_expiration,
    parse_rules,
    trace_keys,
)
from responder.reports.build import build_report
from responder.reports.sources import Coverage, Window

STRATUS = CORPUS / "stratus-red-team_detonation-logs"
GENERATED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SESSION_KEY = "ASIASESSIONKEY000001"
ROLE_KEY = "ASIAROLESESSION00001"
BACKDOOR_KEY = "AKIABACKDOORKEY00001"
ROLE_ARN = "arn:aws:iam::111122223333:role/deploy"
# The session-token prefix every STS token in the corpus starts with.
TOKEN_PREFIX = "IQoJb3JpZ2lu"

# Per Stratus file: the attacker key to report on, the tactic the file name
# states, and the left-behind kinds the technique must produce. Written by hand
# from SOURCES.md Appendix B and the files themselves.
STRATUS_EXPECTED: dict[str, tuple[str, str, set[str]]] = {
    "aws.credential-access.ec2-get-password-data.json": (
        "AKIAWOGXN38MFN92ING5",
        "credential-access",
        set(),
    ),
    "aws.credential-access.ec2-steal-instance-credentials.json": (
        "ASIAP5CT9NN8EYVU1FXV",
        "credential-access",
        set(),
    ),
    "aws.credential-access.secretsmanager-batch-retrieve-secrets.json": (
        "AKIALK3Q0HKBKZJ2XBYP",
        "credential-access",
        set(),
    ),
    "aws.credential-access.secretsmanager-retrieve-secrets.json": (
        "AKIA1JMTHE9ZMZMWG0MG",
        "credential-access",
        set(),
    ),
    "aws.credential-access.ssm-retrieve-securestring-parameters.json": (
        "AKIAY964QRZ7YSGWGVUH",
        "credential-access",
        set(),
    ),
    "aws.defense-evasion.cloudtrail-delete.json": (
        "AKIAFBJ48BV9CGRBRKGM",
        "defense-evasion",
        {"trail-deleted"},
    ),
    "aws.defense-evasion.cloudtrail-event-selectors.json": (
        "AKIA2I0BSXU5LNRWIN0K",
        "defense-evasion",
        {"trail-modified"},
    ),
    "aws.defense-evasion.cloudtrail-stop.json": (
        "AKIAGGWFBBHBE7D3M9WI",
        "defense-evasion",
        {"trail-stopped"},
    ),
    "aws.defense-evasion.dns-delete-logs.json": (
        "AKIADT99GZBZR7NVDT0D",
        "defense-evasion",
        {"dns-query-logging-deleted"},
    ),
    "aws.defense-evasion.organizations-leave.json": (
        "AKIADVISM0T50G52IF0D",
        "defense-evasion",
        set(),
    ),
    "aws.defense-evasion.vpc-remove-flow-logs.json": (
        "AKIA5Q8Z0GHOBYSEN9D6",
        "defense-evasion",
        {"flow-logs-deleted"},
    ),
    "aws.discovery.ec2-download-user-data.json": (
        "AKIAMJ2320ZAXACWCPJI",
        "discovery",
        set(),
    ),
    "aws.execution.ec2-launch-unusual-instances.json": (
        "AKIAR7ISFR69YWROPYAN",
        "execution",
        set(),
    ),
    "aws.execution.ec2-user-data.json": (
        "AKIAZI86ACIZ2J9CV86Z",
        "execution",
        {"instance-user-data"},
    ),
    "aws.execution.ssm-send-command.json": (
        "AKIAW9X2Q2U25SK79UCX",
        "execution",
        set(),
    ),
    "aws.execution.ssm-start-session.json": (
        "AKIA4HNRH6OJUWNZ893Z",
        "execution",
        set(),
    ),
    "aws.exfiltration.ec2-security-group-open-port-22-ingress.json": (
        "AKIAXW7UJ577KFYIAHIM",
        "exfiltration",
        {"security-group-rule"},
    ),
    "aws.exfiltration.ec2-share-ami.json": (
        "AKIA40XZ2OQU8R4QKTAC",
        "exfiltration",
        {"ami-share"},
    ),
    "aws.exfiltration.ec2-share-ebs-snapshot.json": (
        "AKIAYLJU0B35TFSNKCS2",
        "exfiltration",
        {"snapshot-share"},
    ),
    "aws.exfiltration.rds-share-snapshot.json": (
        "AKIAIYTVC64GTXUFCS2X",
        "exfiltration",
        {"db-snapshot-share"},
    ),
    "aws.impact.bedrock-invoke-model.json": (
        "ASIA6FTSFH98XNF7DFZB",
        "impact",
        {"model-access"},
    ),
    "aws.lateral-movement.ec2-instance-connect.json": (
        "AKIAGM9ZC9KUL0AYEVUM",
        "lateral-movement",
        set(),
    ),
    "aws.lateral-movement.ec2-serial-console-send-ssh-public-key.json": (
        "ASIA2HJRQF0DHNYEE9N1",
        "lateral-movement",
        {"serial-console-enabled"},
    ),
    "aws.persistence.iam-backdoor-role.json": (
        "AKIAMUV7B57OZM0RV05D",
        "persistence",
        {"role-trust-policy"},
    ),
    "aws.persistence.iam-backdoor-user.json": (
        "AKIA30BEZSJBVKOFKZW0",
        "persistence",
        {"access-key"},
    ),
    "aws.persistence.iam-create-admin-user.json": (
        "AKIAOZUDECYXYM4ONAN4",
        "persistence",
        {"iam-user", "access-key", "policy"},
    ),
    "aws.persistence.iam-create-backdoor-role.json": (
        "AKIA0W5KI69TY8X86BGT",
        "persistence",
        {"iam-role", "policy"},
    ),
    "aws.persistence.iam-create-user-login-profile.json": (
        "AKIAE18PGYHCY2CYMTFK",
        "persistence",
        {"login-profile"},
    ),
    "aws.persistence.lambda-backdoor-function.json": (
        "AKIAYALJGCQ7J893JO5I",
        "persistence",
        {"lambda-permission"},
    ),
    "aws.persistence.lambda-layer-extension.json": (
        "AKIAUBN5AMJF3I0EG996",
        "persistence",
        {"lambda-configuration"},
    ),
    "aws.persistence.lambda-overwrite-code.json": (
        "AKIAKHYV6FI4F4CJQMDV",
        "persistence",
        {"lambda-code"},
    ),
    "aws.persistence.rolesanywhere-create-trust-anchor.json": (
        "AKIA3SBEM4QSKES6Z5F9",
        "persistence",
        {"rolesanywhere-trust-anchor", "rolesanywhere-profile"},
    ),
    "aws.persistence.sts-federation-token.json": (
        "AKIA6V1GNZTT65XQH36M",
        "persistence",
        set(),
    ),
    "aws.privilege-escalation.iam-update-user-login-profile.json": (
        "AKIAV1MIS7NGMDMR83FC",
        "privilege-escalation",
        {"login-profile"},
    ),
}
# The console sign-in has no access key at all: its records are classified
# directly instead of through a key's report.
CONSOLE_LOGIN = "aws.initial-access.console-login-without-mfa.json"


def _report(
    key, records, *, coverage=None, generated_at=GENERATED, key_type=None, **extra
):
    return build_report(
        access_key_id=key,
        owner=None,
        account_id=None,
        key_type=key_type,
        window=Window(),
        events=records,
        coverage=coverage or Coverage(),
        responder_actions=[],
        generated_at=generated_at,
        **extra,
    )


def _sts(number, *, key, name, minted, expiration, **extra):
    body = record(
        number,
        key=key,
        event_name=name,
        event_source="sts.amazonaws.com",
        responseElements={
            "credentials": {
                "accessKeyId": minted,
                "expiration": expiration,
                "sessionToken": TOKEN_PREFIX + "secret-session-token",
            }
        },
        **extra,
    )
    body["readOnly"] = False
    return body


def _history():
    """K -> S1 (GetSessionToken), K -> R1 (AssumeRole); S1 reads; R1 backdoors."""
    return [
        _sts(
            1,
            key=KEY,
            name="GetSessionToken",
            minted=SESSION_KEY,
            expiration="May 1, 2024 10:00:00 PM",
        ),
        _sts(
            2,
            key=KEY,
            name="AssumeRole",
            minted=ROLE_KEY,
            expiration="2024-05-01T13:00:02Z",
            requestParameters={"roleArn": ROLE_ARN, "roleSessionName": "x"},
        ),
        record(
            3,
            key=SESSION_KEY,
            event_name="GetObject",
            event_source="s3.amazonaws.com",
            requestParameters={"bucketName": "payroll", "key": "2024.csv"},
        ),
        record(
            4,
            key=ROLE_KEY,
            event_name="CreateUser",
            requestParameters={"userName": "backup-admin"},
        ),
        record(
            5,
            key=ROLE_KEY,
            event_name="CreateAccessKey",
            requestParameters={"userName": "backup-admin"},
            responseElements={
                "accessKey": {
                    "accessKeyId": BACKDOOR_KEY,
                    "userName": "backup-admin",
                    "status": "Active",
                    "secretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY",
                    "createDate": "May 1, 2024 10:00:05 AM",
                }
            },
        ),
    ]


def _by_id(report, key):
    return {entry["access_key_id"]: entry for entry in report["derived_keys"]}[key]


class TestParseExpiration:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("May 1, 2024 10:00:00 PM", datetime(2024, 5, 1, 22, 0, tzinfo=UTC)),
            ("Jul 30, 2024, 9:46:15 PM", datetime(2024, 7, 30, 21, 46, 15, tzinfo=UTC)),
            ("Jan 2, 2024 12:05:00 AM", datetime(2024, 1, 2, 0, 5, tzinfo=UTC)),
            ("2024-05-01T22:00:00Z", datetime(2024, 5, 1, 22, 0, tzinfo=UTC)),
            (1714600800, datetime(2024, 5, 1, 22, 0, tzinfo=UTC)),
            (1714600800000, datetime(2024, 5, 1, 22, 0, tzinfo=UTC)),
        ],
    )
    def test_parse_known_forms_gives_utc(self, value, expected):
        """Human STS dates (comma or not), ISO and epoch s/ms parse to UTC."""
        assert parse_expiration(value) == expected

    @pytest.mark.parametrize(
        "value", ["soon", "", None, True, "Feb 31, 2024 1:00:00 PM"]
    )
    def test_parse_unreadable_value_gives_none(self, value):
        """Text that is no date, an impossible date or a boolean gives None."""
        assert parse_expiration(value) is None


class TestRules:
    def test_load_packaged_rules_covers_every_tactic_in_use(self):
        """The shipped file loads, and its rules use the report's tactics."""
        rules = load_rules()

        assert len(rules) > 40
        assert {rule.tactic for rule in rules} <= set(TACTIC_ORDER)
        assert {"persistence", "discovery", "impact"} <= {rule.tactic for rule in rules}

    @pytest.mark.parametrize(
        ("rule", "message"),
        [
            ({"tactic": "persistence"}, r"rule #1: id must be"),
            (
                {"id": "x", "tactic": "nap", "name": "n", "mitre": "T1098"},
                r"rule #1 \(x\): tactic 'nap' is not one of",
            ),
            (
                {"id": "x", "tactic": "impact", "name": "n", "mitre": "1098"},
                r"\(x\): mitre '1098' is not a technique ID",
            ),
            (
                {
                    "id": "x",
                    "tactic": "impact",
                    "name": "n",
                    "mitre": "T1098",
                    "match": {},
                },
                r"\(x\): match needs event_names",
            ),
            (
                {
                    "id": "x",
                    "tactic": "impact",
                    "name": "n",
                    "mitre": "T1098",
                    "match": {"condition": {"resembles": "a"}},
                },
                r"\(x\): match.condition: unknown operator 'resembles'",
            ),
            (
                {
                    "id": "x",
                    "tactic": "impact",
                    "name": "n",
                    "mitre": "T1098",
                    "match": {"condition": {"pattern": {"field": "a", "regex": "("}}},
                },
                r"\(x\): match.condition.pattern.regex does not compile",
            ),
            (
                {
                    "id": "x",
                    "tactic": "impact",
                    "name": "n",
                    "mitre": "T1098",
                    "match": {"event_names": ["A"]},
                    "severity": "high",
                },
                r"\(x\): unknown keys severity",
            ),
        ],
    )
    def test_parse_bad_rule_raises_naming_the_rule(self, rule, message):
        """A malformed rule stops the load with the rule's number, id and fault."""
        with pytest.raises(ConfigError, match=message):
            parse_rules({"rules": [rule]}, source="test.yaml")

    def test_parse_duplicate_id_raises(self):
        """Two rules with one id are refused."""
        rule = {
            "id": "dup",
            "tactic": "impact",
            "name": "n",
            "mitre": "T1485",
            "match": {"event_names": ["DeleteBucket"]},
        }

        with pytest.raises(ConfigError, match=r"rule #2 \(dup\): id is used twice"):
            parse_rules({"rules": [rule, dict(rule)]}, source="test.yaml")

    def test_parse_document_without_rules_raises(self):
        """A document that is not a mapping with a rules list is refused."""
        with pytest.raises(ConfigError, match=r"test\.yaml: expected a mapping"):
            parse_rules(["not", "rules"], source="test.yaml")

    def test_classify_condition_vocabulary_matches_as_documented(self):
        """equals/one_of/not_one_of/contains/pattern/exists/any/all/not behave."""
        raw = {
            "rules": [
                {
                    "id": "mixed",
                    "tactic": "other",
                    "name": "n",
                    "mitre": "T1000",
                    "match": {
                        "event_names": ["Do"],
                        "condition": {
                            "all": [
                                {"equals": {"field": "p.flag", "value": True}},
                                {"one_of": {"field": "p.list", "values": ["b"]}},
                                {"not_one_of": {"field": "p.kind", "values": ["x"]}},
                                {"contains": {"field": "p", "value": "NEEDLE"}},
                                {"pattern": {"field": "p.list", "regex": "^a$"}},
                                {"exists": "p.deep.value"},
                                {"not": {"exists": "p.missing"}},
                                {
                                    "any": [
                                        {"equals": {"field": "p.n", "value": 3}},
                                        {"equals": {"field": "p.n", "value": 4}},
                                    ]
                                },
                            ]
                        },
                    },
                }
            ]
        }
        rules = parse_rules(raw, source="test.yaml")
        matching = {
            "eventName": "Do",
            "p": {
                "flag": "true",
                "list": ["a", "b"],
                "kind": "y",
                "deep": [{"value": "haystack-needle"}],
                "n": 3,
            },
        }
        failing = json.loads(json.dumps(matching))
        failing["p"]["kind"] = "X"

        assert classify(matching, rules) == ["mixed"]
        assert classify(failing, rules) == []

    def test_classify_fallback_applies_only_when_nothing_else_matched(self):
        """GetSecretValue is credential access, never also generic discovery."""
        secret = record(
            1, event_name="GetSecretValue", event_source="secretsmanager.amazonaws.com"
        )
        listing = record(
            2, event_name="ListSecrets", event_source="secretsmanager.amazonaws.com"
        )

        assert classify(secret) == ["secrets-read"]
        assert classify(listing) == ["cloud-service-discovery"]


class TestStratusCorpus:
    @pytest.mark.parametrize("name", sorted(STRATUS_EXPECTED))
    def test_report_names_tactic_and_left_behind(self, name):
        """Each technique file's key report names its tactic and what it left."""
        key, tactic, kinds = STRATUS_EXPECTED[name]
        records = json.loads((STRATUS / name).read_text())

        report = _report(key, records)

        assert tactic in report["summary"]["techniques"]
        assert tactic in {entry["tactic"] for entry in report["techniques"]}
        assert {item["kind"] for item in report["left_behind"]} == kinds
        assert report["summary"]["left_behind"] == len(report["left_behind"])
        assert TOKEN_PREFIX not in json.dumps(report)

    def test_every_corpus_file_has_an_expectation(self):
        """No Stratus file is left out of the table above."""
        files = {path.name for path in STRATUS.glob("*.json")}

        assert files == set(STRATUS_EXPECTED) | {CONSOLE_LOGIN}

    def test_console_login_without_mfa_is_initial_access(self):
        """The key-less console sign-in without MFA is classified as initial access."""
        records = json.loads((STRATUS / CONSOLE_LOGIN).read_text())

        found = {rule for item in records for rule in classify(item)}

        assert "console-login-without-mfa" in found

    def test_get_password_data_follows_role_session(self):
        """The operator key's report includes its role session's denied calls."""
        records = json.loads(
            (STRATUS / "aws.credential-access.ec2-get-password-data.json").read_text()
        )

        report = _report("AKIAWOGXN38MFN92ING5", records)

        techniques = {entry["id"]: entry for entry in report["techniques"]}
        assert techniques["ec2-password-data"]["events"] == 30
        assert techniques["ec2-password-data"]["failed"] == 30
        session = _by_id(report, "ASIANQQHHS551LWULIWD")
        assert session["obtained_by"] == "AssumeRole"
        assert session["expires_at"] == "2024-07-30T21:46:15Z"
        assert session["covered_by_containment"] is False

    def test_federation_token_session_is_covered(self):
        """A GetFederationToken session of the exposed user key is covered."""
        records = json.loads(
            (STRATUS / "aws.persistence.sts-federation-token.json").read_text()
        )

        report = _report("AKIA6V1GNZTT65XQH36M", records)

        session = _by_id(report, "ASIASTJKC5GCM7ZE6LUP")
        assert session["covered_by_containment"] is True
        assert session["events"] == 1
        assert session["expires_at"] == "2024-11-30T20:43:17Z"


class TestInvictusTrail:
    def test_busiest_key_report_lists_sessions_and_chains(self):
        """The busiest AKIA key's report follows its sessions and chains each event."""
        records = []
        for path in sorted(INVICTUS.glob("*.json.gz")):
            records += json.loads(gzip.decompress(path.read_bytes()))["Records"]
        tally = Counter(
            item["userIdentity"].get("accessKeyId")
            for item in records
            if str(item["userIdentity"].get("accessKeyId", "")).startswith("AKIA")
        )
        busiest = tally.most_common(1)[0][0]

        report = _report(busiest, records)

        derived = {entry["access_key_id"] for entry in report["derived_keys"]}
        sessions = [key for key in derived if key.startswith("ASIA")]
        assert len(sessions) >= 5
        allowed = derived | {busiest}
        assert report["events"]
        for event in report["events"]:
            assert event["access_key_id"] in allowed
            assert event["chain"][0] == busiest
            assert event["chain"][-1] == event["access_key_id"]
        own = sum(1 for event in report["events"] if event["chain"] == [busiest])
        assert own == tally[busiest]
        assert len(report["events"]) > own


class TestHandMadeHistory:
    def test_sessions_and_backdoor_are_chained_and_left_behind(self):
        """K -> S1, K -> R1 -> K2: chains, coverage, open items and leftovers hold."""
        report = _report(KEY, _history(), key_type="long-term")

        chains = {event["event_name"]: event["chain"] for event in report["events"]}
        assert chains == {
            "GetSessionToken": [KEY],
            "AssumeRole": [KEY],
            "GetObject": [KEY, SESSION_KEY],
            "CreateUser": [KEY, ROLE_KEY],
            "CreateAccessKey": [KEY, ROLE_KEY],
        }
        session = _by_id(report, SESSION_KEY)
        role = _by_id(report, ROLE_KEY)
        backdoor = _by_id(report, BACKDOOR_KEY)
        assert [entry["access_key_id"] for entry in report["derived_keys"]] == [
            SESSION_KEY,
            ROLE_KEY,
            BACKDOOR_KEY,
        ]
        assert session["covered_by_containment"] is True
        assert session["expires_at"] == "2024-05-01T22:00:00Z"
        assert session["events"] == 1
        assert role["covered_by_containment"] is False
        assert role["role_arn"] == ROLE_ARN
        assert "not" in role["coverage_note"]
        assert backdoor["type"] == "long-term"
        assert backdoor["user_name"] == "backup-admin"
        assert backdoor["depth"] == 2
        assert backdoor["parent"] == ROLE_KEY
        assert backdoor["covered_by_containment"] is False
        resources = {item["kind"]: item for item in report["left_behind"]}
        assert resources["iam-user"]["resource"] == "backup-admin"
        assert resources["access-key"]["undo"] == (
            "iam:DeleteAccessKey UserName=backup-admin AccessKeyId=" + BACKDOOR_KEY
        )
        assert resources["access-key"]["by_key"] == ROLE_KEY
        role_items = [item for item in report["open_items"] if ROLE_KEY in item["text"]]
        assert role_items[0]["severity"] == "critical"
        assert report["summary"]["derived_keys"] == 3
        assert report["summary"]["open_items"] == len(report["open_items"])
        assert report["schema_version"] == 2

    def test_report_never_holds_secrets_or_claims_full_revocation(self):
        """Session tokens and secret keys stay out; no item claims all are revoked."""
        report = _report(KEY, _history(), key_type="long-term")

        text = json.dumps(report)
        assert TOKEN_PREFIX not in text
        assert "SECRETKEY" not in text
        assert "all sessions revoked" not in text.lower()

    def test_expired_role_session_gives_no_open_item(self):
        """A role session that expired before the report is not an open item."""
        later = datetime(2024, 5, 2, tzinfo=UTC)

        report = _report(KEY, _history(), key_type="long-term", generated_at=later)

        assert not [item for item in report["open_items"] if ROLE_KEY in item["text"]]
        assert "expired" in _by_id(report, ROLE_KEY)["coverage_note"]

    def test_records_in_any_order_give_the_same_report(self):
        """Reversing the records changes neither derived keys nor events."""
        forward = _report(KEY, _history(), key_type="long-term")

        backward = _report(KEY, _history()[::-1], key_type="long-term")

        assert backward["derived_keys"] == forward["derived_keys"]
        assert backward["events"] == forward["events"]

    def test_posture_and_least_privilege_are_passed_through(self):
        """Posture and least-privilege dicts are copied; a quarantine adds an item."""
        posture = {
            "user_name": "alice",
            "quarantine_policy": "AWSCompromisedKeyQuarantineV3",
            "quarantine_note": "leaves sts:AssumeRole open",
        }
        least = {"actions": ["s3:GetObject"], "note": "n"}

        report = _report(
            KEY,
            _history(),
            key_type="long-term",
            posture=posture,
            least_privilege=least,
        )

        assert report["posture"] == posture
        assert report["least_privilege"] == least
        assert any(
            "AWSCompromisedKeyQuarantineV3" in item["text"]
            for item in report["open_items"]
        )

    def test_offline_report_has_null_posture(self):
        """Without posture or least privilege the report says null for both."""
        report = _report(KEY, _history())

        assert report["posture"] is None
        assert report["least_privilege"] is None

    def test_exposure_start_notes_earlier_events(self):
        """Events before the exposure's first signal are counted in a note."""
        start = datetime(2024, 5, 1, 10, 0, 3, tzinfo=UTC)

        report = _report(KEY, _history(), exposure_start=start)

        assert any(
            note.startswith("2 event(s) happened before")
            for note in report["coverage"]["notes"]
        )


class TestFailedAttempts:
    def test_failed_calls_counted_apart_and_persistence_first(self):
        """Denied GetObject and RunInstances are failed; persistence comes first."""
        records = [
            record(
                1,
                event_name="GetObject",
                event_source="s3.amazonaws.com",
                errorCode="AccessDenied",
            ),
            record(
                2,
                event_name="RunInstances",
                event_source="ec2.amazonaws.com",
                errorCode="Client.UnauthorizedOperation",
                requestParameters={"instanceType": "p4d.24xlarge"},
            ),
            record(3, event_name="CreateUser", requestParameters={"userName": "x"}),
        ]

        report = _report(KEY, records)

        assert report["summary"]["failed"] == 2
        assert report["failed"]["total"] == 2
        assert report["techniques"][0]["tactic"] == "persistence"
        assert report["techniques"][0]["failed"] == 0
        run = {entry["id"]: entry for entry in report["techniques"]}[
            "ec2-unusual-instances"
        ]
        assert (run["events"], run["failed"]) == (1, 1)
        assert [item["kind"] for item in report["left_behind"]] == ["iam-user"]


class TestScale:
    def test_other_principals_are_left_out(self):
        """Of 100,003 records, only the key's three are reported."""
        others = [
            record(number % 3000, key=f"AKIAOTHER{number:011d}")
            for number in range(100_000)
        ]
        ours = [record(9001), record(9002), record(9003)]
        records = others[:50_000] + ours + others[50_000:]

        with capture_logs():
            report = _report(KEY, records)

        assert report["summary"]["events"] == 3
        assert {event["access_key_id"] for event in report["events"]} == {KEY}


class TestTruncation:
    def test_chain_deeper_than_limit_is_truncated_with_note(self):
        """Role chaining beyond the depth limit stops there and says so."""
        keys = [KEY] + [f"ASIACHAIN{level:011d}" for level in range(1, 8)]
        records = [
            _sts(
                level,
                key=keys[level - 1],
                name="AssumeRole",
                minted=keys[level],
                expiration="2024-05-01T13:00:00Z",
            )
            for level in range(1, 8)
        ]

        trace = trace_keys(KEY, records)
        report = _report(KEY, records)

        assert len(trace.derived) == MAX_DERIVED_DEPTH
        assert trace.chain(keys[MAX_DERIVED_DEPTH]) == keys[: MAX_DERIVED_DEPTH + 1]
        assert report["coverage"]["truncated"] is True
        assert "deeper than 5" in report["coverage"]["truncation_note"]
        assert any("deeper than 5" in item["text"] for item in report["open_items"])
