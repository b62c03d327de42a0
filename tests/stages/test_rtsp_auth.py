"""RTSP authentication (stages/sinks/rtsp/auth.py), driven the way FFmpeg and
GStreamer drive it: a small client below computes Digest responses from the
server's challenge. Every check takes an explicit clock, so nothing sleeps."""

from __future__ import annotations

import base64
import logging
import random
import re

import pytest

from pipeline.errors import SinkError
from stages.sinks import rtsp_server
from stages.sinks.rtsp.auth import REALM, Credentials, Verdict, _Nonces
from stages.sinks.rtsp_server import RtspServerSink, is_loopback
from tests.stages.rtsp_clients import digest_authorization as answer

URL = "rtsp://127.0.0.1:8554/live"
TRACK = URL + "/trackID=0"
PEER = "192.0.2.10"
OTHER = "198.51.100.7"
T0 = 1000.0


def nonce_of(verdict: Verdict) -> str:
    """The nonce of the Digest challenge in a 401 verdict."""
    (digest,) = [v for v in verdict.challenge if v.startswith("Digest ")]
    match = re.search(r'nonce="([^"]*)"', digest)
    assert match is not None, digest
    return match.group(1)


class Client:
    """One FFmpeg-like client: takes the challenge of a 401, then counts nc up."""

    def __init__(self, creds: Credentials, peer: str = PEER, password: str = "p") -> None:
        self.creds, self.peer, self.password = creds, peer, password
        self.nonce: str | None = None
        self.nc = 0

    def request(self, method: str, uri: str = URL, now: float = T0) -> Verdict:
        header = None
        if self.nonce is not None:
            self.nc += 1
            header = answer(self.nonce, method, uri, password=self.password, nc=self.nc)
        verdict = self.creds.check(method, uri, header, self.peer, now=now)
        if verdict.outcome == "challenge":
            self.nonce, self.nc = nonce_of(verdict), 0
        return verdict

    def send(self, method: str, uri: str = URL, now: float = T0) -> Verdict:
        """Like FFmpeg's ff_rtsp_send_cmd: retry once after a first or stale 401."""
        had_nonce = self.nonce is not None
        verdict = self.request(method, uri, now)
        if not verdict.ok and (not had_nonce or verdict.stale):
            verdict = self.request(method, uri, now)
        return verdict


@pytest.fixture
def creds() -> Credentials:
    return Credentials("u", "p")


def challenge(creds: Credentials, peer: str = PEER, now: float = T0) -> str:
    verdict = creds.check("DESCRIBE", URL, None, peer, now=now)
    assert verdict.outcome == "challenge" and verdict.delay == 0 and not verdict.stale
    return nonce_of(verdict)


# ---- the happy paths --------------------------------------------------------------------


def test_an_ffmpeg_like_client_plays_describe_setup_play(creds: Credentials) -> None:
    client = Client(creds)
    first = client.request("DESCRIBE")
    assert first.outcome == "challenge" and not first.ok
    (digest,) = first.challenge
    assert digest.startswith(f'Digest realm="{REALM}", nonce="')
    assert 'algorithm=MD5, qop="auth"' in digest and "stale" not in digest
    for method, uri in [("DESCRIBE", URL), ("SETUP", TRACK), ("PLAY", URL), ("GET_PARAMETER", URL)]:
        assert client.request(method, uri).ok, (method, client.nc)
    assert client.nc == 4
    # FFmpeg 5.1 as packaged here writes ", " between fields and quotes the
    # algorithm (seen in its trace log); the httpauth.c read for this writes ","
    # and a bare MD5. Both must pass.
    spaced = answer(client.nonce, "PLAY", URL + "/", nc=5).replace(",", ", ")  # type: ignore[arg-type]
    assert 'algorithm=MD5, qop="auth"' in spaced
    spaced = spaced.replace("algorithm=MD5", 'algorithm="MD5"')
    assert creds.check("PLAY", URL + "/", spaced, PEER, now=T0).ok


def test_a_gstreamer_like_client_without_qop_is_accepted(creds: Credentials) -> None:
    nonce = challenge(creds)
    for method, uri in [("DESCRIBE", URL), ("SETUP", TRACK), ("PLAY", URL), ("PLAY", URL)]:
        verdict = creds.check(method, uri, answer(nonce, method, uri, nc=None), PEER, now=T0)
        assert verdict.ok, verdict.reason
    strict = Credentials("u", "p", legacy_digest=False)
    nonce = challenge(strict)
    refused = strict.check("DESCRIBE", URL, answer(nonce, "DESCRIBE", URL, nc=None), PEER, now=T0)
    assert not refused.ok and not refused.stale


def test_the_uri_may_be_the_request_path(creds: Credentials) -> None:
    nonce = challenge(creds)
    header = answer(nonce, "SETUP", "/live/trackID=0")
    assert creds.check("SETUP", TRACK, header, PEER, now=T0).ok


# ---- what an eavesdropper or a guesser gets ---------------------------------------------


def test_a_wrong_password_fails(creds: Credentials) -> None:
    nonce = challenge(creds)
    verdict = creds.check(
        "DESCRIBE", URL, answer(nonce, "DESCRIBE", URL, password="x"), PEER, now=T0
    )
    assert verdict.outcome == "challenge" and not verdict.stale
    wrong_user = answer(nonce, "DESCRIBE", URL, user="v")
    assert not creds.check("DESCRIBE", URL, wrong_user, PEER, now=T0).ok


def test_a_replayed_header_fails(creds: Credentials) -> None:
    nonce = challenge(creds)
    header = answer(nonce, "DESCRIBE", URL, nc=1)
    assert creds.check("DESCRIBE", URL, header, PEER, now=T0).ok
    replay = creds.check("DESCRIBE", URL, header, PEER, now=T0 + 1)
    assert replay.outcome == "challenge" and not replay.stale
    # From another address it fails before any count is looked at: the nonce is
    # bound to the address it was issued to.
    assert not creds.check("DESCRIBE", URL, header, OTHER, now=T0 + 1).ok


def test_the_nonce_count_must_increase(creds: Credentials) -> None:
    nonce = challenge(creds)

    def check(nc: int) -> bool:
        return creds.check("PLAY", URL, answer(nonce, "PLAY", URL, nc=nc), PEER, now=T0).ok

    assert check(2)
    assert not check(1)  # lower than seen
    assert not check(2)  # equal to seen
    assert check(7)  # gaps are fine (a lost request)
    assert not check(5)


def test_an_expired_nonce_gets_a_stale_challenge_and_the_client_goes_on() -> None:
    creds = Credentials("u", "p", nonce_lifetime=5.0)
    client = Client(creds)
    assert client.send("DESCRIBE", now=T0).ok
    assert client.send("SETUP", TRACK, now=T0 + 4.9).ok
    old = client.nonce
    header = answer(old, "PLAY", URL, nc=client.nc + 1)  # type: ignore[arg-type]
    late = creds.check("PLAY", URL, header, PEER, now=T0 + 5.1)
    assert late.outcome == "challenge" and late.stale and late.delay == 0
    assert late.challenge[0].endswith(", stale=true")
    assert nonce_of(late) != old
    # A wrong password on an expired nonce is a plain failure: stale=true would
    # tell a guesser its guess was right.
    wrong = answer(old, "PLAY", URL, password="x", nc=client.nc + 2)  # type: ignore[arg-type]
    assert not creds.check("PLAY", URL, wrong, PEER, now=T0 + 5.1).stale
    # What FFmpeg does with stale=true: retry at once with the new nonce.
    assert client.send("PLAY", now=T0 + 5.1).ok
    assert client.nc == 1
    # The same holds for GStreamer's qop-less answers.
    legacy = answer(client.nonce, "PLAY", URL, nc=None)  # type: ignore[arg-type]
    assert creds.check("PLAY", URL, legacy, PEER, now=T0 + 10).ok
    assert creds.check("PLAY", URL, legacy, PEER, now=T0 + 10.2).stale


def test_a_header_for_another_uri_or_method_fails(creds: Credentials) -> None:
    nonce = challenge(creds)
    setup = answer(nonce, "SETUP", TRACK, nc=1)
    assert not creds.check("SETUP", "rtsp://127.0.0.1:8554/other/trackID=0", setup, PEER, now=T0).ok
    assert not creds.check("PLAY", TRACK, answer(nonce, "SETUP", TRACK, nc=2), PEER, now=T0).ok
    assert not creds.check("SETUP", TRACK, answer(nonce, "SETUP", "/other", nc=3), PEER, now=T0).ok
    assert creds.check("SETUP", TRACK, answer(nonce, "SETUP", TRACK, nc=4), PEER, now=T0).ok


def test_a_forged_nonce_fails(creds: Credentials) -> None:
    nonce = challenge(creds)
    flipped = nonce[:-1] + ("0" if nonce[-1] != "0" else "1")  # one bit of the HMAC
    later = f"{int(nonce[:16], 16) + 10**6:016x}" + nonce[16:]  # a later issue time
    made_elsewhere = nonce_of(Credentials("u", "p").check("DESCRIBE", URL, None, PEER, now=T0))
    for forged in (flipped, later, made_elsewhere, "", "0" * 64, nonce.upper(), nonce + "00"):
        header = answer(forged, "DESCRIBE", URL)
        verdict = creds.check("DESCRIBE", URL, header, PEER, now=T0)
        assert verdict.outcome == "challenge" and not verdict.stale, forged


GARBAGE = [
    "",
    "Digest",
    "Digest ",
    "Digest ,,,",
    "Digest username",
    'Digest username="u',
    'Digest username="u", username="u"',
    "Digest a=b c=d",
    "Basic",
    "Basic ###",
    "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode(),
    "Basic " + base64.b64encode("ü:p".encode()).decode(),
    "Bearer abc",
    'Digest username="ü", realm="FrameGraph", nonce="ñ", uri="/", response="é"',
    "Digest " + "a=" * 5000,
    "Digest " + 'x="' + "\\" * 3001 + '"',
    'Digest username="u\udcff", realm="FrameGraph"',
    "\udcff\udcfe",
    'Dígest username="u"',
    "Basic dTpw\udcff",
    "Digest " + "\u0663" * 32,
]


def test_garbage_and_non_ascii_headers_fail_without_exceptions() -> None:
    creds = Credentials("u", "p", "any")
    nonce = challenge(creds)
    good = answer(nonce, "DESCRIBE", URL, nc=1)
    tampered = [
        good.replace('response="', 'response="\u0663'),  # an Arabic-Indic digit
        good.replace("nc=00000001", "nc=\u0661" * 8),
        good.replace("nc=00000001", "nc=0_000001"),
        good.replace('response="', 'response="é')[:-3],
        good.replace('qop="auth"', 'qop="auth-int"'),
        good.replace('qop="auth"', "qop=ÄUTH"),
        good.replace("algorithm=MD5", "algorithm=SHA-256"),
        good.replace(f'realm="{REALM}"', 'realm="other"'),
        good.replace(f'uri="{URL}"', 'uri="rtsp://[::1/live"'),
        good + ', uri="/live"',
        good.replace('cnonce="0a4f113b9c2d7e51",', ""),
    ]
    rng = random.Random(7)
    fuzz = [
        "".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randrange(80))) for _ in range(300)
    ]
    fuzz += [good[: rng.randrange(len(good))] for _ in range(100)]
    fuzz += ["Digest " + good[rng.randrange(7, len(good)) :] for _ in range(100)]
    for header in GARBAGE + tampered + fuzz:
        for uri in (URL, "*", "rtsp://[::1/x", "/\udcff"):
            verdict = creds.check("DESCRIBE", uri, header, PEER, now=T0)
            assert verdict.outcome in ("challenge", "refuse") and not verdict.stale, header
    for bad_peer in ("", "not an address", "fe80::1%eth0", "\udcff"):
        assert not creds.check("DESCRIBE", URL, "Basic ###", bad_peer, now=T0).ok


# ---- throttling -------------------------------------------------------------------------


def test_failures_from_one_address_are_slowed_then_refused_and_others_are_not() -> None:
    creds = Credentials("u", "p")
    delays = []
    for _ in range(19):
        nonce = challenge(creds)
        verdict = creds.check(
            "DESCRIBE", URL, answer(nonce, "DESCRIBE", URL, password="x"), PEER, now=T0
        )
        assert verdict.outcome == "challenge"
        delays.append(verdict.delay)
    assert delays[:3] == [0, 0, 0]  # typos are free
    assert delays[3:7] == sorted(set(delays[3:7])) and delays[3] > 0  # then doubling
    assert max(delays) == delays[-1] <= 10  # capped
    # Meanwhile another address is untouched, and so are requests without credentials.
    other = Client(creds, OTHER)
    assert other.send("DESCRIBE").ok
    wrong = answer(challenge(creds, OTHER), "DESCRIBE", URL, password="x")
    assert creds.check("DESCRIBE", URL, wrong, OTHER, now=T0).delay == 0
    # The 20th failure: the address is refused, right password or not, until
    # the count decays.
    nonce = challenge(creds)
    creds.check("DESCRIBE", URL, answer(nonce, "DESCRIBE", URL, password="x"), PEER, now=T0)
    refused = creds.check("DESCRIBE", URL, answer(nonce, "DESCRIBE", URL, nc=2), PEER, now=T0)
    assert refused.outcome == "refuse" and refused.retry_after > 0 and refused.challenge == ()
    assert creds.check("DESCRIBE", URL, None, PEER, now=T0).outcome == "refuse"
    assert Client(creds, OTHER).send("DESCRIBE").ok
    later = T0 + refused.retry_after + 0.1
    assert Client(creds).send("DESCRIBE", now=later).ok


def test_ipv6_failures_count_per_64_and_mapped_ipv4_as_ipv4() -> None:
    creds = Credentials("u", "p")

    def fail(peer: str) -> float:
        return creds.check("DESCRIBE", URL, "Digest nonsense", peer, now=T0).delay

    assert [fail(f"2001:db8:1:2::{i:x}") for i in range(1, 5)] == [0, 0, 0, 0.5]
    assert fail("2001:db8:1:3::1") == 0
    assert [fail(p) for p in ("::ffff:192.0.2.99", "192.0.2.99", "::ffff:192.0.2.99")] == [0, 0, 0]
    assert fail("192.0.2.99") == 0.5


def test_memory_stays_bounded_after_10000_failures_from_many_addresses() -> None:
    creds = Credentials("u", "p", "any")
    outcomes = []
    for i in range(10_000):
        peer = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        now = T0 + i * 1e-4
        first = creds.check("DESCRIBE", URL, None, peer, now=now)
        if first.outcome == "challenge":
            header = answer(nonce_of(first), "DESCRIBE", URL, password=f"guess{i}")
            first = creds.check("DESCRIBE", URL, header, peer, now=now)
        assert not first.ok
        outcomes.append(first.outcome)
    sizes = creds.state_size()
    assert sizes["nonces"] == 0  # failures leave no nonce state
    assert sizes["peers"] == 4096 + 1  # the table plus one shared overflow record
    # The first 4,096 addresses each had their own record; past that, new
    # addresses share the overflow record, so spreading guesses over many
    # addresses buys 20 guesses in all before all new ones are refused.
    assert set(outcomes[:4096]) == {"challenge"}
    assert outcomes[4096:].count("challenge") == 20 and outcomes[-1] == "refuse"
    assert Client(creds, "10.0.0.1").send("DESCRIBE", now=T0 + 1).ok  # a known address
    # Once the records have decayed they make room again.
    assert Client(creds, "10.99.0.1").send("DESCRIBE", now=T0 + 3600).ok
    assert not creds.check("DESCRIBE", URL, "Basic ###", "10.99.0.1", now=T0 + 3600).ok
    assert creds.state_size()["peers"] == 1


def test_nonce_counts_are_pruned_on_expiry_and_capped() -> None:
    creds = Credentials("u", "p", nonce_lifetime=5.0)
    for i in range(50):
        assert Client(creds, f"10.0.0.{i}").send("DESCRIBE", now=T0).ok
    assert creds.state_size()["nonces"] == 50
    assert Client(creds).send("DESCRIBE", now=T0 + 6).ok
    assert creds.state_size()["nonces"] == 1
    # Past the cap the oldest nonce is dropped and declared stale, so it can
    # never be replayed with a count that was already used.
    nonces = _Nonces(lifetime=60.0, capacity=4)
    minted = [nonces.mint(PEER, T0 + i) for i in range(6)]
    for i, nonce in enumerate(minted[:4]):
        assert nonces.count(nonce, T0 + i, 1, T0 + 10) == "ok"
    assert nonces.count(minted[4], T0 + 4, 1, T0 + 10) == "ok"
    assert len(nonces) == 4
    assert nonces.count(minted[0], T0, 1, T0 + 10) == "stale"
    assert not nonces.fresh(T0, T0 + 10) and nonces.fresh(T0 + 5, T0 + 10)


# ---- schemes ----------------------------------------------------------------------------

BASIC_GOOD = "Basic " + base64.b64encode(b"u:p").decode()
BASIC_WRONG = "Basic " + base64.b64encode(b"u:x").decode()


def test_basic_is_refused_by_default_and_accepted_when_asked_for() -> None:
    default = Credentials("u", "p")
    assert default.scheme == "digest"
    verdict = default.check("DESCRIBE", URL, BASIC_GOOD, PEER, now=T0)
    assert verdict.outcome == "challenge" and [v.split()[0] for v in verdict.challenge] == [
        "Digest"
    ]
    for scheme, offered in (("basic", ["Basic"]), ("any", ["Digest", "Basic"])):
        creds = Credentials("u", "p", scheme)  # type: ignore[arg-type]
        first = creds.check("DESCRIBE", URL, None, PEER, now=T0)
        assert [v.split()[0] for v in first.challenge] == offered
        assert creds.check("DESCRIBE", URL, BASIC_GOOD, PEER, now=T0).ok
        assert not creds.check("DESCRIBE", URL, BASIC_WRONG, PEER, now=T0).ok
    basic_only = Credentials("u", "p", "basic")
    assert not basic_only.check(
        "DESCRIBE", URL, answer(challenge(default), "DESCRIBE", URL), PEER
    ).ok
    with pytest.raises(ValueError):
        Credentials("u", "p", "ntlm")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Credentials("u", "p", nonce_lifetime=0)
    assert "p" not in repr(Credentials("u", "p")).replace("password", "")


def test_the_sink_defaults_to_digest_and_warns_when_open_to_the_network(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert RtspServerSink(URL, username="u", password="p").credentials.scheme == "digest"  # type: ignore[union-attr]
    assert [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "cam.lan")] == [
        True,
        True,
        True,
        False,
        False,
    ]

    def no_server(*args: object) -> None:
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(rtsp_server, "acquire_server", no_server)
    sinks = {
        "open": RtspServerSink("rtsp://0.0.0.0:8554/live"),
        "basic": RtspServerSink("rtsp://0.0.0.0:8554/live", username="u", password="p", auth="any"),
        "digest": RtspServerSink("rtsp://0.0.0.0:8554/live", username="u", password="p"),
        "local": RtspServerSink("rtsp://127.0.0.1:8554/live"),
    }
    warned = {}
    for name, sink in sinks.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="framegraph"), pytest.raises(SinkError):
            sink.open()
        warned[name] = " ".join(r.getMessage() for r in caplog.records)
    assert "without credentials" in warned["open"]
    assert "Basic" in warned["basic"]
    assert warned["digest"] == "" and warned["local"] == ""
