"""Partner-program intake: ECDSA and HMAC senders, parsing, signals, feedback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import fields
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from helpers import CORPUS
from structlog.testing import capture_logs

from responder.exceptions import (
    KeyFetchFailed,
    SignalMalformed,
    WebhookSignatureInvalid,
)
from responder.signals.partner import (
    PartnerKeyStore,
    PartnerMatch,
    feedback,
    match_signals,
    parse_matches,
    verify_partner_signature,
    verify_scanner_signature,
)
from responder.store.models import SignalStatus

PARTNER = CORPUS / "partner"
API_URL = "https://api.github.example"
KEYS_URL = f"{API_URL}/meta/public_keys/secret_scanning"
META = PARTNER / "github-meta_public_keys_secret_scanning.response.json"
TEST_KEY_LIST = PARTNER / "ghdocs-2022_TEST-KEY-f9525bf0_public_keys.json"
CURRENT = "ghdocs-current_signed-sample_key-bcb53661_source-commit"
TEST_KEY_SAMPLE = "ghdocs-2022_signed-sample_TEST-KEY-f9525bf0_source-some_source"
LEGACY = (
    "ghdocs-legacy_signed-sample_key-90a42116_no-source",
    "ghdocs-legacy_example-post_key-90a42116_commit-url",
)
NOT_VERIFYING = "ghdocs-legacy_example-post_blob-url_SIGNATURE-DOES-NOT-VERIFY"
CURRENT_SIGNATURE = (
    "MEQCIQDaMKqrGnE27S0kgMrEK0eYBmyG0LeZismAEz/BgZyt7AIfXt9fErtRS4XaeSt/AO1RtBY66"
    "YcAdjxji410VQV4xg=="
)
LEGACY_ID = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a"
CURRENT_ID = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c"
NEW_ID = "test-key-generated-in-this-run"

# The two-match batch: a key of ours (moto's account) and one of another account.
OUR_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
OUR_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
OTHER_KEY_ID = "AKIAI44QH8DHBEXAMPLE"
OTHER_SECRET = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
SCANNER_SECRET = b"test-scanner-secret-0123456789"


def sample(stem: str) -> tuple[bytes, dict[str, str]]:
    """Return the exact body bytes and the headers of a corpus sample."""
    body = (PARTNER / f"{stem}.body.json").read_bytes()
    headers = json.loads((PARTNER / f"{stem}.headers.json").read_text())
    return body, headers


def sha256_hex(text: str) -> str:
    """Return the SHA-256 hex digest of `text` in UTF-8."""
    return hashlib.sha256(text.encode()).hexdigest()


def pem_of(private_key) -> str:
    """Return the PEM of a private key's public half, as the meta API lists it."""
    return (
        private_key.public_key()
        .public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        .decode()
    )


def ecdsa_sign(private_key, body: bytes) -> str:
    """Return the header value GitHub would send: base64 of a DER signature."""
    signature = private_key.sign(body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def hmac_header(body: bytes, secret: bytes = SCANNER_SECRET) -> str:
    """Return the X-Responder-Signature-256 value a scanner would send."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class KeyServer:
    """Serves a key list at KEYS_URL through httpx.MockTransport and counts calls."""

    def __init__(self, key_list: dict | bytes | None = None) -> None:
        self.content = key_list if key_list is not None else META.read_bytes()
        self.answer: httpx.Response | Exception | None = None
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if isinstance(self.answer, Exception):
            raise self.answer
        if self.answer is not None:
            return self.answer
        if str(request.url) != KEYS_URL:
            return httpx.Response(404)
        content = self.content
        if isinstance(content, dict):
            content = json.dumps(content).encode()
        return httpx.Response(200, content=content)

    def add_key(self, identifier: str, pem: str) -> None:
        """Publish one more key, as GitHub does when it rotates."""
        listed = json.loads(META.read_bytes())
        if isinstance(self.content, dict):
            listed = self.content
        listed["public_keys"].append(
            {"key_identifier": identifier, "key": pem, "is_current": True}
        )
        self.content = listed

    def store(self, clock: FakeClock | None = None, **options) -> PartnerKeyStore:
        client = httpx.Client(transport=httpx.MockTransport(self.handler))
        return PartnerKeyStore(client, API_URL, clock=clock or FakeClock(), **options)


@pytest.fixture
def server() -> KeyServer:
    """A key server publishing GitHub's two production keys."""
    return KeyServer()


@pytest.fixture
def clock() -> FakeClock:
    """A frozen clock for the key store."""
    return FakeClock()


@pytest.fixture
def new_key():
    """A P-256 private key generated for this test run."""
    return ec.generate_private_key(ec.SECP256R1())


def two_match_batch() -> bytes:
    """Return a partner body reporting one key of ours and one of another account."""
    matches = [
        {
            "token": f"{OUR_KEY_ID}:{OUR_SECRET}",
            "type": "aws_access_key_id",
            "url": "https://github.com/octo/app/blob/abc123/.env",
            "source": "content",
        },
        {
            "token": f"{OTHER_KEY_ID}:{OTHER_SECRET}",
            "type": "aws_access_key_id",
            "url": "https://github.com/octo/app/commit/abc123",
            "source": "commit",
        },
    ]
    return json.dumps(matches, separators=(",", ":")).encode()


class TestPartnerSignatureCorpus:
    def test_verify_current_docs_sample_passes(self, server):
        """The current docs sample verifies with bcb53661 from the meta API."""
        body, headers = sample(CURRENT)

        verify_partner_signature(body, headers, server.store())

        assert [str(request.url) for request in server.requests] == [KEYS_URL]

    def test_verify_2022_test_key_sample_passes(self):
        """The 2022 sample verifies with the TEST-KEY the docs published."""
        server = KeyServer(TEST_KEY_LIST.read_bytes())
        body, headers = sample(TEST_KEY_SAMPLE)

        verify_partner_signature(body, headers, server.store())

        assert len(server.requests) == 1

    @pytest.mark.parametrize("stem", LEGACY)
    def test_verify_legacy_sample_with_old_key_passes(self, server, stem):
        """Legacy samples verify with 90a42116, listed but no longer current."""
        body, headers = sample(stem)

        verify_partner_signature(body, headers, server.store())

        assert len(server.requests) == 1

    def test_verify_docs_sample_that_does_not_verify_raises_401(self, server):
        """The translated docs' blob-URL sample kept an old signature: refused."""
        body, headers = sample(NOT_VERIFYING)

        with pytest.raises(WebhookSignatureInvalid, match="does not match") as info:
            verify_partner_signature(body, headers, server.store())
        assert info.value.status_code == 401

    @pytest.mark.parametrize("position", [0, 50, -1])
    def test_verify_body_changed_by_one_byte_raises_401(self, server, position):
        """Any single changed byte of a signed body breaks the signature."""
        body, headers = sample(CURRENT)
        changed = bytearray(body)
        changed[position] ^= 0x01

        with pytest.raises(WebhookSignatureInvalid, match="does not match"):
            verify_partner_signature(bytes(changed), headers, server.store())

    def test_verify_wrong_but_listed_key_raises_401(self, server):
        """A real signature checked under the other listed key does not pass."""
        body, headers = sample(CURRENT)
        headers["Github-Public-Key-Identifier"] = LEGACY_ID

        with pytest.raises(WebhookSignatureInvalid, match="does not match"):
            verify_partner_signature(body, headers, server.store())

    @pytest.mark.parametrize("case", [str.upper, str.lower, str.title, str])
    def test_verify_header_names_in_any_case_passes(self, server, case):
        """Header names are matched whatever their case."""
        body, headers = sample(CURRENT)
        recased = {case(name): value for name, value in headers.items()}

        verify_partner_signature(body, recased, server.store())

        assert len(server.requests) == 1


class TestPartnerSignatureHeaders:
    @pytest.mark.parametrize(
        "dropped", ["Github-Public-Key-Identifier", "Github-Public-Key-Signature"]
    )
    def test_verify_missing_header_raises_401_without_fetch(self, server, dropped):
        """A missing header is refused before any key is fetched."""
        body, headers = sample(CURRENT)
        del headers[dropped]

        with pytest.raises(WebhookSignatureInvalid, match=f"missing {dropped}"):
            verify_partner_signature(body, headers, server.store())
        assert server.requests == []

    @pytest.mark.parametrize(
        ("header", "value", "expected"),
        [
            ("Github-Public-Key-Signature", "not base64!", "base64"),
            ("Github-Public-Key-Signature", "bm90IERFUg==", "DER"),
            ("Github-Public-Key-Signature", "A" * 129, "over 128 characters"),
            ("Github-Public-Key-Signature", "", "base64"),
            ("Github-Public-Key-Signature", "*" + CURRENT_SIGNATURE, "base64"),
            ("Github-Public-Key-Signature", CURRENT_SIGNATURE + "\n=", "base64"),
            ("Github-Public-Key-Identifier", "a b", "malformed"),
            ("Github-Public-Key-Identifier", "f" * 129, "malformed"),
            ("Github-Public-Key-Identifier", "", "malformed"),
        ],
    )
    def test_verify_malformed_header_raises_401_without_fetch(
        self, server, header, value, expected
    ):
        """An oversized or malformed header is refused, saying what is expected."""
        body, headers = sample(CURRENT)
        headers[header] = value

        with pytest.raises(WebhookSignatureInvalid, match=expected):
            verify_partner_signature(body, headers, server.store())
        assert server.requests == []

    def test_verify_header_sent_twice_raises_401(self, server):
        """Two copies of a header in different case are ambiguous: refused."""
        body, headers = sample(CURRENT)
        headers["GITHUB-PUBLIC-KEY-IDENTIFIER"] = LEGACY_ID

        with pytest.raises(WebhookSignatureInvalid, match="sent 2 times"):
            verify_partner_signature(body, headers, server.store())
        assert server.requests == []

    def test_verify_starlette_headers_passes(self, server):
        """The endpoint can hand Starlette's case-insensitive headers straight in."""
        from starlette.datastructures import Headers

        body, headers = sample(CURRENT)
        raw = [
            (name.lower().encode(), value.encode()) for name, value in headers.items()
        ]

        verify_partner_signature(body, Headers(raw=raw), server.store())

        assert len(server.requests) == 1


class TestPartnerKeyStore:
    def test_public_key_known_identifier_is_cached(self, server):
        """A known identifier is served from the cache after the first fetch."""
        store = server.store()

        first = store.public_key(CURRENT_ID)
        second = store.public_key(CURRENT_ID)

        assert first is second
        assert len(server.requests) == 1
        assert server.requests[0].headers["Accept"] == "application/vnd.github+json"

    def test_public_key_unknown_identifier_refreshes_once_then_401(self, server, clock):
        """An unknown identifier refreshes the list once, then is refused."""
        store = server.store(clock)
        store.public_key(CURRENT_ID)
        clock.advance(61)

        with pytest.raises(WebhookSignatureInvalid, match="names no key") as info:
            store.public_key("unknown-1")
        assert info.value.status_code == 401
        assert len(server.requests) == 2

    def test_public_key_second_unknown_within_interval_does_not_fetch(
        self, server, clock
    ):
        """Forged identifiers within the interval cost no fetch at all."""
        store = server.store(clock)
        store.public_key(CURRENT_ID)
        clock.advance(61)
        with pytest.raises(WebhookSignatureInvalid):
            store.public_key("unknown-1")
        clock.advance(30)

        with pytest.raises(WebhookSignatureInvalid, match="names no key"):
            store.public_key("unknown-2")
        assert len(server.requests) == 2

    def test_public_key_unknown_on_first_use_fetches_once(self, server):
        """The lazy first fetch is the one refresh that call gets."""
        store = server.store()

        with pytest.raises(WebhookSignatureInvalid, match="names no key"):
            store.public_key("unknown-1")
        assert len(server.requests) == 1

    def test_public_key_zero_interval_still_fetches_once_per_call(self, server):
        """Even with no minimum interval, one call never fetches twice."""
        store = server.store(min_refresh_interval=timedelta(0))

        with pytest.raises(WebhookSignatureInvalid, match="names no key"):
            store.public_key("unknown-1")
        assert len(server.requests) == 1

    def test_public_key_rotated_in_after_interval_is_found(
        self, server, clock, new_key
    ):
        """A key GitHub publishes later is picked up by the next allowed refresh."""
        store = server.store(clock)
        store.public_key(CURRENT_ID)
        server.add_key(NEW_ID, pem_of(new_key))
        clock.advance(60)

        key = store.public_key(NEW_ID)

        assert key.public_numbers() == new_key.public_key().public_numbers()
        assert len(server.requests) == 2

    def test_public_key_older_than_max_age_is_refetched(self, server, clock):
        """A list older than max_age is fetched again even for a known key."""
        store = server.store(clock, max_age=timedelta(hours=1))
        store.public_key(CURRENT_ID)
        clock.advance(3600)

        store.public_key(CURRENT_ID)

        assert len(server.requests) == 2

    def test_public_key_stale_refresh_failing_keeps_old_keys(self, server, clock):
        """When the periodic refetch fails, the keys already held stay in use."""
        store = server.store(clock, max_age=timedelta(hours=1))
        old = store.public_key(CURRENT_ID)
        clock.advance(3600)
        server.answer = httpx.Response(503)

        with capture_logs() as logs:
            kept = store.public_key(CURRENT_ID)

        assert kept is old
        assert len(server.requests) == 2
        assert [entry["event"] for entry in logs] == ["partner_keys_refresh_failed"]
        assert logs[0]["log_level"] == "warning"

    def test_public_key_removed_from_list_is_refused_after_refetch(self, server, clock):
        """A key GitHub withdraws stops verifying once the list is refetched."""
        store = server.store(clock, max_age=timedelta(hours=1))
        store.public_key(LEGACY_ID)
        listed = json.loads(META.read_bytes())
        listed["public_keys"] = [
            entry
            for entry in listed["public_keys"]
            if entry["key_identifier"] != LEGACY_ID
        ]
        server.content = listed
        clock.advance(3600)

        with pytest.raises(WebhookSignatureInvalid, match="names no key"):
            store.public_key(LEGACY_ID)
        assert len(server.requests) == 2

    @pytest.mark.parametrize(
        ("answer", "expected"),
        [
            (httpx.Response(500), "HTTP 500"),
            (httpx.Response(404), "HTTP 404"),
            (httpx.Response(200, content=b"<html>"), "not JSON"),
            (httpx.Response(200, json={"keys": []}), "no 'public_keys'"),
            (httpx.Response(200, json=[1, 2]), "no 'public_keys'"),
            (httpx.ConnectError("refused"), "ConnectError"),
            (httpx.ReadTimeout("slow"), "ReadTimeout"),
        ],
    )
    def test_public_key_fetch_failure_raises_key_fetch_failed(
        self, server, answer, expected
    ):
        """Any failure to get a usable list is KeyFetchFailed (a 503), not a 401."""
        server.answer = answer

        with pytest.raises(KeyFetchFailed, match=expected):
            server.store().public_key(CURRENT_ID)
        assert len(server.requests) == 1

    def test_public_key_redirect_is_not_followed(self, server):
        """A redirect is a failure even on a client that follows them by default."""
        server.answer = httpx.Response(
            302, headers={"Location": "https://elsewhere.example/keys"}
        )

        client = httpx.Client(
            transport=httpx.MockTransport(server.handler), follow_redirects=True
        )
        store = PartnerKeyStore(client, API_URL)

        with pytest.raises(KeyFetchFailed, match="HTTP 302"):
            store.public_key(CURRENT_ID)
        assert [str(request.url) for request in server.requests] == [KEYS_URL]

    def test_public_key_declared_oversized_list_raises(self, server):
        """A list declared larger than the cap is refused."""
        server.answer = httpx.Response(200, content=b" " * 2048)

        with pytest.raises(KeyFetchFailed, match="over the 1024-byte limit"):
            server.store(max_response_bytes=1024).public_key(CURRENT_ID)

    def test_public_key_declared_length_is_refused_before_reading(self, server):
        """A Content-Length over the cap is refused without reading the body."""
        server.answer = httpx.Response(
            200, headers={"Content-Length": "99999"}, content=b"{}"
        )

        with pytest.raises(KeyFetchFailed, match="of 99999 bytes"):
            server.store(max_response_bytes=1024).public_key(CURRENT_ID)

    def test_public_key_streamed_oversized_list_raises(self, server):
        """A list without Content-Length is cut off at the cap while reading."""
        chunks = iter([b" " * 700, b" " * 700])
        server.answer = httpx.Response(200, content=chunks)

        with pytest.raises(KeyFetchFailed, match="over the 1024-byte limit"):
            server.store(max_response_bytes=1024).public_key(CURRENT_ID)
        assert "content-length" not in server.answer.headers

    def test_public_key_after_failure_within_interval_does_not_fetch(
        self, server, clock
    ):
        """After a failed fetch, calls within the interval fail without fetching."""
        store = server.store(clock)
        server.answer = httpx.Response(502)
        with pytest.raises(KeyFetchFailed):
            store.public_key(CURRENT_ID)
        server.answer = None
        clock.advance(10)

        with pytest.raises(KeyFetchFailed, match="at most once every 60 s"):
            store.public_key(CURRENT_ID)
        assert len(server.requests) == 1

    def test_public_key_after_failure_and_interval_recovers(self, server, clock):
        """Once the interval has passed, a failed fetch is tried again."""
        store = server.store(clock)
        server.answer = httpx.Response(502)
        with pytest.raises(KeyFetchFailed):
            store.public_key(CURRENT_ID)
        server.answer = None
        clock.advance(60)

        store.public_key(CURRENT_ID)

        assert len(server.requests) == 2

    @pytest.mark.parametrize(
        ("make_key", "expected"),
        [
            (lambda: ec.generate_private_key(ec.SECP384R1()), "not P-256"),
            (
                lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
                "not an ECDSA key",
            ),
        ],
    )
    def test_public_key_not_p256_is_refused(self, server, make_key, expected):
        """A listed key of another curve or algorithm is refused with the reason."""
        server.add_key(NEW_ID, pem_of(make_key()))
        store = server.store()

        with pytest.raises(WebhookSignatureInvalid, match=expected):
            store.public_key(NEW_ID)
        verify_partner_signature(*sample(CURRENT), store)
        assert len(server.requests) == 1

    def test_public_key_unreadable_pem_is_refused_others_kept(self, server):
        """A garbled entry is refused; the other keys of the list still work."""
        server.add_key(NEW_ID, "-----BEGIN PUBLIC KEY-----\nnope\n")
        store = server.store()

        with pytest.raises(WebhookSignatureInvalid, match="not a readable PEM"):
            store.public_key(NEW_ID)
        verify_partner_signature(*sample(CURRENT), store)
        assert len(server.requests) == 1

    def test_public_key_fetch_logs_identifiers_as_data(self, server):
        """A fetch is logged once as an event with the count and identifiers."""
        with capture_logs() as logs:
            server.store().public_key(CURRENT_ID)

        assert logs == [
            {
                "event": "partner_keys_fetched",
                "log_level": "info",
                "url": KEYS_URL,
                "count": 2,
                "key_identifiers": sorted([CURRENT_ID, LEGACY_ID]),
                "refused": [],
            }
        ]

    def test_public_key_concurrent_unknown_identifiers_fetch_once(self, server):
        """Threads asking at once share one fetch instead of stampeding GitHub."""
        slow = server.handler

        def handler(request):
            time.sleep(0.05)
            return slow(request)

        client = httpx.Client(transport=httpx.MockTransport(handler))
        store = PartnerKeyStore(client, API_URL, clock=FakeClock())
        outcomes: list[str] = []

        def ask(number: int) -> None:
            try:
                store.public_key(f"forged-{number}")
            except WebhookSignatureInvalid:
                outcomes.append("401")

        threads = [threading.Thread(target=ask, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert outcomes == ["401"] * 8
        assert len(server.requests) == 1


class TestScannerSignature:
    def test_verify_good_signature_passes(self):
        """A correct HMAC over the raw body is accepted, hex in either case."""
        body = two_match_batch()

        digest = hmac_header(body).partition("=")[2]

        verify_scanner_signature(body, f"sha256={digest}", SCANNER_SECRET)
        verify_scanner_signature(body, f"sha256={digest.upper()}", SCANNER_SECRET)

        assert digest != digest.upper()

    def test_verify_upper_case_scheme_raises_401(self):
        """The scheme must be lower-case `sha256`, as GitHub writes it."""
        body = two_match_batch()
        header = "SHA256=" + hmac_header(body).partition("=")[2]

        with pytest.raises(WebhookSignatureInvalid, match="malformed"):
            verify_scanner_signature(body, header, SCANNER_SECRET)

    def test_verify_wrong_secret_raises_401(self):
        """A signature made with another secret is refused."""
        body = two_match_batch()

        with pytest.raises(WebhookSignatureInvalid, match="does not match") as info:
            verify_scanner_signature(body, hmac_header(body, b"other"), SCANNER_SECRET)
        assert info.value.status_code == 401

    def test_verify_changed_body_raises_401(self):
        """A signature over other bytes is refused."""
        body = two_match_batch()

        with pytest.raises(WebhookSignatureInvalid, match="does not match"):
            verify_scanner_signature(body + b" ", hmac_header(body), SCANNER_SECRET)

    @pytest.mark.parametrize("header", [None, ""])
    def test_verify_missing_header_raises_401(self, header):
        """No header is refused, naming the header to send."""
        with pytest.raises(WebhookSignatureInvalid, match="missing X-Responder"):
            verify_scanner_signature(b"[]", header, SCANNER_SECRET)

    @pytest.mark.parametrize(
        "header",
        [
            "0" * 64,
            "sha1=" + "0" * 40,
            "sha256=" + "0" * 63,
            "sha256=" + "g" * 64,
            "sha256= " + "0" * 64,
        ],
    )
    def test_verify_malformed_header_raises_401(self, header):
        """Anything but sha256=<64 hex> is refused, saying the expected form."""
        with pytest.raises(WebhookSignatureInvalid, match="sha256=<64 hex"):
            verify_scanner_signature(b"[]", header, SCANNER_SECRET)

    def test_verify_empty_secret_raises_value_error(self):
        """An empty secret is a configuration mistake, never a pass."""
        body = b"[]"

        with pytest.raises(ValueError, match="secret is empty"):
            verify_scanner_signature(body, hmac_header(body, b""), b"")


class TestParseMatches:
    def test_parse_current_docs_sample_keeps_hash_not_token(self):
        """The docs sample parses into a match holding the token's SHA-256 only."""
        body, _ = sample(CURRENT)

        (match,) = parse_matches(body)

        assert match == PartnerMatch(
            token_hash=sha256_hex("some_token"),
            type="some_type",
            url="https://example.com/base-repo-url/",
            source="commit",
            access_key_ids=(),
        )
        assert "token" not in {field.name for field in fields(PartnerMatch)}
        assert "some_token" not in repr(match)

    def test_parse_legacy_sample_without_source_gives_none(self):
        """The oldest sample has no `source`: the match says None."""
        body, _ = sample(LEGACY[0])

        (match,) = parse_matches(body)

        assert match.source is None
        assert match.url == "some_url"

    def test_parse_pretty_printed_docs_example_reads_all_fields(self):
        """Whitespace between tokens does not matter to parsing."""
        body = PARTNER / "ghdocs-current_example-request-body_source-content.json"

        (match,) = parse_matches(body.read_bytes())

        assert match.type == "mycompany_api_token"
        assert match.source == "content"
        assert match.token_hash == sha256_hex("NMIfyYncKcRALEXAMPLE")

    def test_parse_empty_array_yields_no_matches(self):
        """An empty batch is valid and yields nothing."""
        assert parse_matches(b"[]") == []

    def test_parse_null_or_empty_url_and_extra_fields_are_accepted(self):
        """Null or empty `url`/`source` become None; unknown fields are ignored."""
        body = json.dumps(
            [
                {"token": "t1", "type": "x", "url": None, "source": None},
                {"token": "t2", "type": "x", "url": "", "extra": {"n": 1}},
            ]
        ).encode()

        matches = parse_matches(body)

        assert [(match.url, match.source) for match in matches] == [
            (None, None),
            (None, None),
        ]

    def test_parse_key_ids_in_token_are_kept_in_order(self):
        """Every AKIA/ASIA ID in a token is kept once, in order of appearance."""
        token = f"ASIAIOSFODNN7EXAMPLE {OUR_KEY_ID} ASIAIOSFODNN7EXAMPLE"
        body = json.dumps([{"token": token, "type": "aws_access_key_id"}]).encode()

        (match,) = parse_matches(body)

        assert match.access_key_ids == ("ASIAIOSFODNN7EXAMPLE", OUR_KEY_ID)

    def test_parse_lone_surrogate_token_is_hashed(self):
        """A token with a lone surrogate escape is hashed instead of crashing."""
        body = b'[{"token":"\\ud800x","type":"x"}]'

        (match,) = parse_matches(body)

        assert match.token_hash == hashlib.sha256(b"\xed\xa0\x80x").hexdigest()

    def test_parse_exactly_max_matches_is_accepted(self):
        """A batch of exactly `max_matches` elements is within the limit."""
        body = json.dumps([{"token": f"t{n}", "type": "x"} for n in range(3)])

        assert len(parse_matches(body.encode(), max_matches=3)) == 3

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            (b"", "empty body"),
            (b"  \n", "empty body"),
            (b"not json", "not JSON"),
            (b"\xff\xfe[]", "not JSON"),
            (b'{"token":"t","type":"x"}', "JSON dict: expected a JSON array"),
            (b'"text"', "JSON str"),
            (b"[1]", "match 0 is not an object"),
            (b'[{"type":"x"}]', "'token' must be a non-empty string"),
            (b'[{"token":42,"type":"x"}]', "'token' must be a non-empty string"),
            (b'[{"token":"","type":"x"}]', "'token' must be a non-empty string"),
            (b'[{"token":"t"}]', "'type' must be a non-empty string"),
            (b'[{"token":"t","type":["x"]}]', "'type' must be a non-empty string"),
            (b'[{"token":"t","type":"x","url":7}]', "'url' must be a string"),
            (b'[{"token":"t","type":"x","source":{}}]', "'source' must be a string"),
            (b"[" * 100_000 + b"]" * 100_000, "too deeply nested"),
            (
                b'[{"token":"t","type":"x"},{"token":"t"}]',
                "match 1: 'type'",
            ),
        ],
    )
    def test_parse_malformed_body_raises_400(self, body, expected):
        """A body that is not an array of match objects is refused, saying why."""
        with pytest.raises(SignalMalformed, match=expected) as info:
            parse_matches(body)
        assert info.value.status_code == 400

    def test_parse_too_many_matches_raises_400(self):
        """A batch over `max_matches` is refused, asking for smaller batches."""
        body = json.dumps([{"token": f"t{n}", "type": "x"} for n in range(4)])

        with pytest.raises(SignalMalformed, match="4 matches is over the limit of 3"):
            parse_matches(body.encode(), max_matches=3)

    def test_parse_error_message_never_holds_the_token(self):
        """A refusal about one element does not echo the token of any element."""
        body = json.dumps(
            [{"token": f"{OUR_KEY_ID}:{OUR_SECRET}", "type": "x", "url": 1}]
        ).encode()

        with pytest.raises(SignalMalformed) as info:
            parse_matches(body)
        assert OUR_SECRET not in str(info.value)
        assert OUR_KEY_ID not in str(info.value)


class TestPartnerBatch:
    def test_signed_two_match_batch_gives_two_signals_and_feedback(
        self, server, new_key
    ):
        """A signed batch of two AWS keys gives two accepted signals, two entries."""
        server.add_key(NEW_ID, pem_of(new_key))
        body = two_match_batch()
        headers = {
            "Github-Public-Key-Identifier": NEW_ID,
            "Github-Public-Key-Signature": ecdsa_sign(new_key, body),
        }

        verify_partner_signature(body, headers, server.store())
        matches = parse_matches(body)
        signals = match_signals(matches, source="partner")
        entries = feedback(matches)

        assert [(s.status, s.access_key_id) for s in signals] == [
            (SignalStatus.ACCEPTED, OUR_KEY_ID),
            (SignalStatus.ACCEPTED, OTHER_KEY_ID),
        ]
        assert {s.source for s in signals} == {"partner"}
        assert signals[0].details == {
            "type": "aws_access_key_id",
            "url": "https://github.com/octo/app/blob/abc123/.env",
            "source": "content",
            "token_hash": sha256_hex(f"{OUR_KEY_ID}:{OUR_SECRET}"),
        }
        assert signals[0].kind == "token_match.aws_access_key_id"
        assert entries == [
            {
                "token_hash": sha256_hex(f"{OUR_KEY_ID}:{OUR_SECRET}"),
                "token_type": "aws_access_key_id",
                "label": "true_positive",
            },
            {
                "token_hash": sha256_hex(f"{OTHER_KEY_ID}:{OTHER_SECRET}"),
                "token_type": "aws_access_key_id",
                "label": "true_positive",
            },
        ]

    def test_signed_batch_leaves_no_raw_token_anywhere(self, server, new_key):
        """Neither token nor secret part shows in matches, signals or feedback."""
        server.add_key(NEW_ID, pem_of(new_key))
        body = two_match_batch()
        headers = {
            "github-public-key-identifier": NEW_ID,
            "github-public-key-signature": ecdsa_sign(new_key, body),
        }

        verify_partner_signature(body, headers, server.store())
        matches = parse_matches(body)
        signals = match_signals(matches, source="partner")
        shown = " ".join(
            [
                repr(matches),
                repr(signals),
                json.dumps([s.details for s in signals]),
                json.dumps([s.reason for s in signals]),
                json.dumps(feedback(matches)),
            ]
        )

        for secret in (OUR_SECRET, OTHER_SECRET):
            assert secret not in shown
            assert secret.split("/")[0] not in shown
        assert f"{OUR_KEY_ID}:" not in shown
        assert OUR_KEY_ID in shown

    def test_scanner_batch_is_marked_scanner(self):
        """An HMAC-signed batch goes through the same parser as source scanner."""
        body = two_match_batch()
        verify_scanner_signature(body, hmac_header(body), SCANNER_SECRET)

        signals = match_signals(parse_matches(body), source="scanner")

        assert [(s.source, s.access_key_id) for s in signals] == [
            ("scanner", OUR_KEY_ID),
            ("scanner", OTHER_KEY_ID),
        ]


def one_match(**fields_) -> PartnerMatch:
    """Parse a single-element batch built from `fields_`."""
    (match,) = parse_matches(json.dumps([fields_]).encode())
    return match


class TestMatchSignals:
    @pytest.mark.parametrize(
        "type_",
        [
            "aws_secret_access_key",
            "aws_session_token",
            "AWS",
            "aws-access-token",
            "AWS Secret Access Key",
        ],
    )
    def test_signals_aws_type_without_key_id_needs_person(self, type_):
        """An AWS credential naming no key ID asks a person, pointing at the url."""
        match = one_match(token=OUR_SECRET, type=type_, url="https://x.example/f")

        (signal,) = match_signals([match], source="partner")

        assert signal.status == SignalStatus.NEEDS_PERSON
        assert signal.access_key_id is None
        assert "person" in signal.reason
        assert "url" in signal.reason
        assert signal.details["url"] == "https://x.example/f"
        assert OUR_SECRET not in repr(signal)

    @pytest.mark.parametrize(
        "type_",
        [
            "mycompany_api_token",
            "slack_token",
            "awesome_token",
            "awstats_password",
            "gaws_key",
        ],
    )
    def test_signals_non_aws_type_is_ignored(self, type_):
        """A non-AWS token without a key ID is recorded but not acted on."""
        match = one_match(token="NMIfyYncKcRALEXAMPLE", type=type_)

        (signal,) = match_signals([match], source="partner")

        assert signal.status == SignalStatus.IGNORED
        assert signal.reason == f"ignored: not an AWS credential (type {type_})"
        assert signal.access_key_id is None

    def test_signals_key_id_under_any_type_is_accepted(self):
        """A key ID is acted on even when the sender's type is not an AWS one."""
        match = one_match(token=f"x {OTHER_KEY_ID} y", type="generic_secret")

        (signal,) = match_signals([match], source="scanner")

        assert signal.status == SignalStatus.ACCEPTED
        assert signal.access_key_id == OTHER_KEY_ID

    def test_signals_token_with_two_key_ids_gives_two_signals(self):
        """One signal per key ID, each with its own delivery ID."""
        match = one_match(token=f"{OUR_KEY_ID} {OTHER_KEY_ID}", type="aws")

        signals = match_signals([match], source="partner")

        assert [s.access_key_id for s in signals] == [OUR_KEY_ID, OTHER_KEY_ID]
        assert signals[0].delivery_id != signals[1].delivery_id

    def test_signals_same_match_reposted_has_same_delivery_id(self):
        """Parsing the same body twice gives the same IDs, so a replay dedupes."""
        body = two_match_batch()

        first = match_signals(parse_matches(body), source="partner")
        again = match_signals(parse_matches(body), source="partner")

        assert [s.delivery_id for s in first] == [s.delivery_id for s in again]
        assert len({s.delivery_id for s in first}) == 2

    @pytest.mark.parametrize(
        "change",
        [
            {"url": "https://github.com/octo/other"},
            {"source": "issue_comment"},
            {"type": "aws_secret_access_key"},
            {"token": f"{OUR_KEY_ID}:other"},
        ],
    )
    def test_signals_match_differing_in_one_field_has_new_delivery_id(self, change):
        """The same key found elsewhere is a new delivery, not a duplicate."""
        base = {"token": f"{OUR_KEY_ID}:{OUR_SECRET}", "type": "aws", "url": "u"}

        (first,) = match_signals([one_match(**base)], source="partner")
        (other,) = match_signals([one_match(**{**base, **change})], source="partner")

        assert first.delivery_id != other.delivery_id
        assert len(first.delivery_id) == 64

    def test_signals_no_separator_collision_between_fields(self):
        """Shifting text between url and source does not collide delivery IDs."""
        left = one_match(token="t", type="aws", url="a|b", source="c")
        right = one_match(token="t", type="aws", url="a", source="b|c")

        ids = {s.delivery_id for s in match_signals([left, right], source="partner")}

        assert len(ids) == 2


class TestFeedback:
    def test_feedback_labels_by_key_id_presence(self):
        """A key ID or an AWS credential type is true_positive; anything else false."""
        matches = [
            one_match(token=f"{OUR_KEY_ID}:{OUR_SECRET}", type="aws_access_key_id"),
            one_match(token=OUR_SECRET, type="aws_secret_access_key"),
            one_match(token="some_token", type="some_type"),
        ]

        entries = feedback(matches)

        assert [entry["label"] for entry in entries] == [
            "true_positive",
            "true_positive",
            "false_positive",
        ]
        assert entries[2] == {
            "token_hash": sha256_hex("some_token"),
            "token_type": "some_type",
            "label": "false_positive",
        }

    def test_feedback_never_sends_token_raw(self):
        """Entries carry exactly token_hash, token_type and label: no token_raw."""
        matches = parse_matches(two_match_batch())

        entries = feedback(matches)

        assert [set(entry) for entry in entries] == [
            {"token_hash", "token_type", "label"}
        ] * 2
        assert OUR_SECRET not in json.dumps(entries)

    def test_feedback_of_no_matches_is_empty(self):
        """An empty batch gives an empty feedback list."""
        assert feedback([]) == []
