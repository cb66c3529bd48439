"""Signing an approval from the command line and with a JOSE library: clean one-line errors,
no JWT `typ`, `EdDSA` and its fully-specified name `Ed25519` both accepted."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import OKPAlgorithm
from jwt.api_jws import PyJWS

from tests.api.test_approvals import APPROVE, refund_request, registered
from tests.conftest import Api
from tests.integration.test_cli import _run


def _header(token: str) -> dict:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _key_file(signer, path: Path, password: bytes | None = None) -> Path:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(
        signer.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
    )
    return path


async def test_signatures_carry_no_jwt_typ(api: Api) -> None:
    signer = await registered(api)

    assert "typ" not in _header(signer.sign(b"{}"))


async def test_the_fully_specified_alg_ed25519_is_accepted_and_reverified(
    api: Api, database_url: str, tmp_path: Path
) -> None:
    _, request = await refund_request(api)
    signer = await registered(api)
    jws = PyJWS()
    jws.register_algorithm("Ed25519", OKPAlgorithm())
    token = jws.encode(
        request["signingPayload"].encode(),
        signer.private,
        algorithm="Ed25519",
        headers={"kid": signer.kid, "typ": None},
    )

    result = await api.gql(APPROVE, {"id": request["id"], "sig": token}, as_="approver")
    verified = await asyncio.to_thread(_run, ["audit", "verify"], database_url, tmp_path)

    assert result["data"]["approveRequest"]["status"] == "APPROVED"
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_the_readme_pyjwt_recipe_signs_an_approval(api: Api) -> None:
    _, request = await refund_request(api)
    signer = await registered(api)

    # README: "Signing with PyJWT"
    token = jwt.api_jws.PyJWS().encode(
        request["signingPayload"].encode("utf-8"),
        signer.private,
        algorithm="EdDSA",
        headers={"kid": signer.kid, "typ": None},
    )
    result = await api.gql(APPROVE, {"id": request["id"], "sig": token}, as_="approver")

    assert result["data"]["approveRequest"]["status"] == "APPROVED"


async def test_a_payload_file_with_a_trailing_newline_is_signed_without_it(
    api: Api, database_url: str, tmp_path: Path
) -> None:
    _, request = await refund_request(api)
    signer = await registered(api)
    key = _key_file(signer, tmp_path / "approver.pem")
    payload = tmp_path / "payload.json"
    payload.write_text(request["signingPayload"] + "\n")

    done = await asyncio.to_thread(
        _run,
        [
            "sign",
            "--key",
            str(key),
            "--request",
            request["id"],
            "--payload",
            str(payload),
            "--kid",
            signer.kid,
            "--yes",
        ],
        database_url,
        tmp_path,
    )
    result = await api.gql(
        APPROVE, {"id": request["id"], "sig": done.stdout.strip()}, as_="approver"
    )

    assert "removed the trailing newline" in done.stderr
    assert result["data"]["approveRequest"]["status"] == "APPROVED"


async def test_an_encrypted_key_asks_for_its_passphrase(
    api: Api, database_url: str, tmp_path: Path
) -> None:
    _, request = await refund_request(api)
    signer = await registered(api)
    key = _key_file(signer, tmp_path / "approver.pem", password=b"correct horse")

    wrong = await asyncio.to_thread(
        _run,
        ["sign", "--key", str(key), "--request", request["id"], "--kid", signer.kid, "--yes"],
        database_url,
        tmp_path,
    )

    # Without a terminal getpass reads standard input, which is empty here: a wrong passphrase.
    assert wrong.returncode == 2
    assert wrong.stderr.strip().endswith("ordergate: wrong passphrase for --key")
    assert "passphrase for" in wrong.stderr  # it asked


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--key", "{tmp}/missing.pem", "--request", "1"], "cannot read --key"),
        (["--key", "{tmp}/public.pem", "--request", "1"], "--key is a public key"),
        (["--key", "{tmp}/garbage.pem", "--request", "1"], "is not a private key in PEM"),
        (
            ["--key", "{tmp}/public.pem", "--request", "abc"],
            "--request takes an approval request's id",
        ),
        (
            ["--key", "{tmp}/public.pem", "--request", "\u0661"],
            "--request takes an approval request's id",
        ),
    ],
)
async def test_sign_refuses_bad_arguments_in_one_line(
    api: Api, database_url: str, tmp_path: Path, args: list[str], needle: str
) -> None:
    signer = await registered(api)
    (tmp_path / "public.pem").write_text(signer.pem)
    (tmp_path / "garbage.pem").write_text("-----BEGIN PRIVATE KEY-----\nnope\n")

    done = await asyncio.to_thread(
        _run, ["sign", *[a.format(tmp=tmp_path) for a in args]], database_url, tmp_path
    )

    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert needle in done.stderr
    assert "Traceback" not in done.stderr
