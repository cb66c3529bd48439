"""Each refusal of the security core on its own, so that a change to any one of them fails a
test (the mutation run in tests/MUTATION.md found these untested)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from jwt.api_jws import PyJWS

from api.client_ip import resolve_client_ip
from domain.approvals import signatures
from domain.errors import BadInput, SignatureInvalid

TRUSTED = [__import__("ipaddress").ip_network("10.0.0.0/8")]


# ---- client IP ----------------------------------------------------------------------------------


def test_a_trusted_proxy_without_forwarded_for_is_itself_the_client() -> None:
    assert resolve_client_ip("10.0.0.2", [], TRUSTED) == "10.0.0.2"


def test_without_a_peer_the_client_is_unknown() -> None:
    assert resolve_client_ip(None, ["203.0.113.5"], TRUSTED) == "unknown"


def test_a_peer_that_is_not_an_address_is_kept_as_given() -> None:
    assert resolve_client_ip("unix-socket", ["203.0.113.5"], TRUSTED) == "unix-socket"


def test_every_hop_trusted_leaves_the_leftmost_as_the_client() -> None:
    assert resolve_client_ip("10.0.0.3", ["10.0.0.1, 10.0.0.2"], TRUSTED) == "10.0.0.1"


def test_several_forwarded_for_headers_are_one_list() -> None:
    assert resolve_client_ip("10.0.0.3", ["203.0.113.9", "10.0.0.2"], TRUSTED) == "203.0.113.9"


def test_an_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    assert resolve_client_ip("198.51.100.1", ["10.0.0.1"], TRUSTED) == "198.51.100.1"


# ---- JWS headers -------------------------------------------------------------------------------

PAYLOAD = b'{"requestId":"1"}'


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _token(header: object, payload: bytes = PAYLOAD, signature: str = "c2ln") -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(payload)}.{signature}"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("a.b", "signature is not a compact JWS"),
        ("a..c", "signature is not a compact JWS"),
        ("a.b.c.d", "signature is not a compact JWS"),
        ("!!!.b.c", "signature header is malformed"),
        (_token(["EdDSA"]), "signature must use alg EdDSA"),
        (_token({"kid": "1"}), "signature must use alg EdDSA"),
        (_token({"alg": "HS256", "kid": "1"}), "signature must use alg EdDSA"),
        (_token({"alg": "none", "kid": "1"}), "signature must use alg EdDSA"),
        (_token({"alg": "ES256", "kid": "1"}), "signature must use alg EdDSA"),
        (
            _token({"alg": "EdDSA", "kid": "1", "crit": ["b64"]}),
            "signature header may not carry crit or b64",
        ),
        (
            _token({"alg": "EdDSA", "kid": "1", "b64": False}),
            "signature header may not carry crit or b64",
        ),
        (_token({"alg": "EdDSA"}), "signature header must name the signing key in kid"),
        (_token({"alg": "EdDSA", "kid": 1}), "signature header must name the signing key in kid"),
        (_token({"alg": "EdDSA", "kid": ""}), "signature header must name the signing key in kid"),
        (
            _token({"alg": "EdDSA", "kid": None}),
            "signature header must name the signing key in kid",
        ),
    ],
)
def test_each_header_refusal_on_its_own(token: str, message: str) -> None:
    with pytest.raises(SignatureInvalid) as refused:
        signatures.read_header(token)

    assert refused.value.message == message


def test_a_well_formed_header_gives_its_kid() -> None:
    assert signatures.read_header(_token({"alg": "EdDSA", "kid": "7"})).kid == "7"


def test_only_eddsa_verifies_even_with_the_right_key() -> None:
    private = Ed25519PrivateKey.generate()
    pem = signatures.normalised_pem(private.public_key())
    good = signatures.sign(PAYLOAD, private, "1")
    header, payload, signature = good.split(".")
    relabelled = _b64(json.dumps({"alg": "HS256", "kid": "1"}).encode())

    assert signatures.verified_payload(good, pem) == PAYLOAD
    with pytest.raises(SignatureInvalid):
        signatures.verified_payload(f"{relabelled}.{payload}.{signature}", pem)
    with pytest.raises(SignatureInvalid):
        signatures.verified_payload(f"{header}.{_b64(b'{}')}.{signature}", pem)


def test_another_keys_signature_does_not_verify() -> None:
    token = signatures.sign(PAYLOAD, Ed25519PrivateKey.generate(), "1")
    other = signatures.normalised_pem(Ed25519PrivateKey.generate().public_key())

    with pytest.raises(SignatureInvalid) as refused:
        signatures.verified_payload(token, other)

    assert refused.value.message == "signature does not verify with this key"


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        ("not a key", "publicKey is not a PEM public key"),
        (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode(),
            "publicKey must be an Ed25519 key",
        ),
    ],
)
def test_only_ed25519_public_keys_in_pem_are_accepted(pem: str, message: str) -> None:
    with pytest.raises(BadInput) as refused:
        signatures.load_public_key(pem)

    assert refused.value.message == message


# ---- the audit chain does not depend on the machine's zone ------------------------------------

HASH_IN_ANOTHER_ZONE = """
import datetime as dt, time
time.tzset()
from domain.audit.chain import compute_hash, format_time
from domain.audit.chain import FIELDS
event = {name: None for name in FIELDS}
event.update(seq=1, at=dt.datetime(2026, 7, 1, 0, 30, tzinfo=dt.UTC), action="x", roles="[]",
             outcome="success", details="{}")
print(format_time(event["at"]), format_time(dt.datetime(2026, 7, 1, 8, 30,
      tzinfo=dt.timezone(dt.timedelta(hours=8)))), compute_hash("0" * 64, event))
"""


def _hash_in_zone(zone: str) -> str:
    done = subprocess.run(  # noqa: S603 - the test's own interpreter and script
        [sys.executable, "-c", HASH_IN_ANOTHER_ZONE],
        env={**os.environ, "TZ": zone},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_hashes_and_times_are_the_same_in_every_local_zone() -> None:
    utc = _hash_in_zone("UTC")

    assert utc.startswith("2026-07-01T00:30:00.000000Z 2026-07-01T00:30:00.000000Z ")
    assert _hash_in_zone("Asia/Shanghai") == utc
    assert _hash_in_zone("America/New_York") == utc


def test_a_malformed_hop_stops_the_walk_even_with_addresses_left_of_it() -> None:
    # Left of the junk is what the client wrote; walking on would believe it.
    assert resolve_client_ip("10.0.0.2", ["6.6.6.6, junk, 10.0.0.1"], TRUSTED) == "10.0.0.1"


def test_the_fully_specified_alg_name_ed25519_is_accepted() -> None:
    private = Ed25519PrivateKey.generate()
    pem = signatures.normalised_pem(private.public_key())
    jws = PyJWS()
    jws.register_algorithm("Ed25519", OKPAlgorithm())
    token = jws.encode(PAYLOAD, private, algorithm="Ed25519", headers={"kid": "3"})

    assert signatures.read_header(token).kid == "3"
    assert signatures.verified_payload(token, pem) == PAYLOAD


def test_our_signatures_carry_no_jwt_typ() -> None:
    token = signatures.sign(PAYLOAD, Ed25519PrivateKey.generate(), "4")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))

    assert header == {"alg": "EdDSA", "kid": "4"}
