"""Ed25519 public keys and compact JWS verification for approvals.

What an approval signature must be, checked in this order, each failure SIGNATURE_INVALID:
1. a compact JWS (three base64url parts) whose protected header says `alg: EdDSA` (or its
   fully-specified name `Ed25519`), names a
   `kid`, and carries no `crit` or `b64` (so the payload cannot be detached or left unencoded);
2. `kid` is a key registered by the caller (another user's key is as good as none) and not
   revoked;
3. the signature verifies under that key;
4. the signed payload is byte-for-byte the request's stored `signingPayload` — not merely
   equivalent JSON, so what the approver read is exactly what was signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm
from jwt.api_jws import PyJWS

from domain.errors import BadInput, SignatureInvalid

# `EdDSA` (RFC 8037), and `Ed25519`, its fully-specified name (RFC 9864); keys are Ed25519 only
# (load_public_key), so both name the same algorithm here.
ALGORITHMS = ("EdDSA", "Ed25519")
_JWS = PyJWS(algorithms=["EdDSA"])
_JWS.register_algorithm("Ed25519", OKPAlgorithm())


def load_public_key(pem: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise BadInput("publicKey is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BadInput("publicKey must be an Ed25519 key")
    return key


def fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def normalised_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@dataclass(frozen=True)
class JwsHeader:
    kid: str


def read_header(token: str) -> JwsHeader:
    """Step 1: the shape of the token, before any key is looked up."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise SignatureInvalid("signature is not a compact JWS")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, binascii.Error):
        raise SignatureInvalid("signature header is malformed") from None
    if not isinstance(header, dict) or header.get("alg") not in ALGORITHMS:
        raise SignatureInvalid("signature must use alg EdDSA")
    if "crit" in header or "b64" in header:
        raise SignatureInvalid("signature header may not carry crit or b64")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise SignatureInvalid("signature header must name the signing key in kid")
    return JwsHeader(kid=kid)


def verified_payload(token: str, public_key_pem: str) -> bytes:
    """Step 3: the payload bytes, if the signature verifies under this key."""
    try:
        decoded = _JWS.decode_complete(
            token, load_public_key(public_key_pem), algorithms=list(ALGORITHMS)
        )
    except jwt.PyJWTError:
        raise SignatureInvalid("signature does not verify with this key") from None
    return decoded["payload"]


def sign(payload: bytes, private_key: Ed25519PrivateKey, kid: str) -> str:
    """A compact JWS over exactly these bytes (what `ordergate sign` produces). No `typ`: the
    payload is an approval, not JWT claims."""
    return _JWS.encode(payload, private_key, algorithm="EdDSA", headers={"kid": kid, "typ": None})
