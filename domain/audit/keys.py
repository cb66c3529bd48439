"""The server's Ed25519 key that signs audit checkpoints."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def fingerprint(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class CheckpointKey:
    public: Ed25519PublicKey
    private: Ed25519PrivateKey | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def public_pem(self) -> str:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def sign(self, message: bytes) -> str:
        if self.private is None:
            raise RuntimeError("this key can only verify")
        return base64.urlsafe_b64encode(self.private.sign(message)).decode().rstrip("=")

    def verify(self, signature: str, message: bytes) -> bool:
        try:
            raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
            self.public.verify(raw, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    @classmethod
    def from_private_pem(cls, data: bytes) -> CheckpointKey:
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError("the audit checkpoint key must be an Ed25519 private key")
        return cls(public=private.public_key(), private=private)

    @classmethod
    def from_public_pem(cls, data: bytes) -> CheckpointKey:
        public = serialization.load_pem_public_key(data)
        if not isinstance(public, Ed25519PublicKey):
            raise ValueError("expected an Ed25519 public key")
        return cls(public=public)

    @classmethod
    def generate_into(cls, path: Path) -> CheckpointKey:
        import os

        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        return cls(public=private.public_key(), private=private)
