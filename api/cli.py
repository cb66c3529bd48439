"""The `ordergate` command."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from api.settings import Settings, SettingsError, checkpoint_key, load_settings
from domain.access import COORDINATES, ROLES, FieldAccess, PolicyDecisionPoint
from domain.actor import SYSTEM_ORIGIN
from domain.audit.service import Subject
from domain.csvfiles import SafeWriter
from domain.db import create_engine, session_factory, utcnow
from domain.errors import DomainError
from domain.values import printable


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ordergate", description="ordergate order API")
    parser.add_argument("--version", action="version", version=f"ordergate {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the API (GraphiQL outside production)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="app processes (uvicorn restarts any that dies); housekeeping runs in one of them",
    )
    serve.add_argument(
        "--allow-unmigrated",
        action="store_true",
        help="serve although the database is not at the migration head (/readyz says not ready)",
    )

    worker = sub.add_parser(
        "worker", help="deliver order events to webhooks (run one or more beside `serve`)"
    )
    worker.add_argument("--once", action="store_true", help="one round, then exit")
    sub.add_parser("migrate", help="apply database migrations")
    demo = sub.add_parser("demo", help="load demo data (idempotent)")
    demo.add_argument(
        "--orders",
        type=int,
        default=None,
        help="then add bulk orders until there are this many (e.g. 1000000; COPY on PostgreSQL)",
    )

    users = sub.add_parser("users", help="manage accounts").add_subparsers(
        dest="users_command", required=True
    )
    create = users.add_parser("create", help="create an account; the password is read from stdin")
    create.add_argument("--username", required=True)
    create.add_argument("--role", action="append", required=True, choices=ROLES)
    create.add_argument(
        "--channel", action="append", default=[], help="bind a sales user's row scope"
    )
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    create.add_argument(
        "--email",
        help="where the system writes to this person (low-stock alerts go to "
        "purchasing and operations users with one)",
    )
    create.add_argument(
        "--employee-id",
        help="the person behind the account; separation of duties compares persons, so two "
        "accounts of one person cannot request and approve the same change",
    )

    users.add_parser("list", help="every account with roles, channels and status")
    for verb, text in (
        ("disable", "disable an account (its tokens stop working at once)"),
        ("enable", "enable a disabled account"),
        ("unlock", "lift a lock-out after failed logins"),
        ("reset-password", "set a new password, read from stdin (tokens stop working)"),
    ):
        admin = users.add_parser(verb, help=text)
        admin.add_argument("--username", required=True)
        if verb == "reset-password":
            admin.add_argument("--password-stdin", action="store_true")
    set_roles = users.add_parser("set-roles", help="replace an account's roles")
    set_roles.add_argument("--username", required=True)
    set_roles.add_argument("--role", action="append", required=True, choices=ROLES)

    policy = sub.add_parser("policy", help="inspect the access policy").add_subparsers(
        dest="policy_command", required=True
    )
    explain = policy.add_parser("explain", help="the decision for one role and field, and why")
    explain.add_argument("--role", required=True)
    explain.add_argument("--field", required=True, help="a coordinate such as Order.grossMargin")
    policy.add_parser("check", help="fail on lines naming unknown things and fields nobody reads")

    report = sub.add_parser("report", help="compliance reports").add_subparsers(
        dest="report_command", required=True
    )
    access = report.add_parser("access", help="the quarterly access report")
    access.add_argument("--quarter", required=True, help='like "2026-Q3"')
    access.add_argument(
        "--format",
        choices=("csv", "json", "html"),
        default="json",
        help="csv is a zip of one CSV per table (give --output FILE.zip)",
    )
    access.add_argument("--through-seq", type=int, help="reproduce a report: audit events up to N")
    access.add_argument("--output", type=Path, help="file to write (default: stdout)")

    reconcile = sub.add_parser(
        "reconcile", help="compare a channel's business day with its snapshot (CSV to stdout)"
    )
    reconcile.add_argument("--channel", required=True, help="TAOBAO, JD, PINDUODUO or WEB")
    reconcile.add_argument("--day", required=True, help="the business day, like 2026-11-25")
    reconcile.add_argument(
        "--snapshot",
        type=Path,
        help="the channel's view first: CSV with externalId,status,total,updatedAt",
    )

    customers_cmd = sub.add_parser("customers", help="customer master data").add_subparsers(
        dest="customers_command", required=True
    )
    cleanse = customers_cmd.add_parser(
        "cleanse",
        help="re-validate contacts; list merge candidates, invalid phones, incomplete records",
    )
    cleanse.add_argument("--quarter", required=True, help='like "2026-Q4"')
    cleanse.add_argument("--format", choices=("json", "csv"), default="json")

    keys = sub.add_parser("keys", help="production secrets").add_subparsers(
        dest="keys_command", required=True
    )
    init = keys.add_parser(
        "init",
        help="write a token signing key and an audit checkpoint key (0600) into a directory",
    )
    init.add_argument("--dir", type=Path, required=True, help="where to write them")

    sign = sub.add_parser("sign", help="sign an approval request's payload with your key")
    sign.add_argument("--key", type=Path, required=True, help="your Ed25519 private key (PEM)")
    sign.add_argument("--request", required=True, help="the approval request id")
    sign.add_argument("--kid", help="your signing key id (default: looked up by fingerprint)")
    sign.add_argument(
        "--payload",
        type=Path,
        help="the signingPayload saved to a file (default: read from the database)",
    )
    sign.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit.add_parser("verify", help="recompute the hash chain and check checkpoints")
    verify.add_argument("--checkpoints", type=Path, help="a JSON-lines copy kept elsewhere")
    verify.add_argument("--public-key", type=Path, help="verify with this PEM public key")
    export = audit.add_parser("export", help="write events as CSV")
    export.add_argument("--from", dest="time_from", type=_aware, help="ISO 8601 with offset")
    export.add_argument("--to", dest="time_to", type=_aware, help="ISO 8601 with offset, exclusive")
    export.add_argument("--output", type=Path, help="file to write (default: stdout)")
    audit.add_parser("checkpoint", help="sign the current head now")
    audit.add_parser("checkpoints", help="print every checkpoint as JSON lines, to keep elsewhere")
    audit.add_parser("public-key", help="print the checkpoint public key (PEM)")

    events_cmd = sub.add_parser("events", help="the event outbox").add_subparsers(
        dest="events_command", required=True
    )
    check = events_cmd.add_parser(
        "check", help="every committed order version has its event (exit 1 when one has none)"
    )
    check.add_argument(
        "--since", type=_aware, help="only orders changed at or after this time (ISO 8601)"
    )
    return parser


def _aware(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no offset; naive times are refused")
    return parsed


def _cli_subject() -> Subject:
    """Who the audit log names for a command run on the server itself."""
    return Subject(None, f"cli:{getpass.getuser()}"[:64], (), SYSTEM_ORIGIN)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ordergate")
    except PackageNotFoundError:
        return "(not installed)"


def _read_password(username: str, *, from_stdin: bool = False) -> str:
    """Ask twice on a terminal; otherwise read one line from standard input, saying so
    unless --password-stdin already did."""
    if sys.stdin.isatty() and not from_stdin:
        first = getpass.getpass(f"password for {username}: ")
        if getpass.getpass("again: ") != first:
            raise SystemExit("ordergate: the passwords differ")
        return first
    if not from_stdin:
        print(
            f"ordergate: reading the password for {username} from standard input "
            "(--password-stdin says so explicitly)",
            file=sys.stderr,
        )
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise SystemExit("ordergate: no password on standard input")
    return password


async def _administer_users(settings: Settings, args: argparse.Namespace) -> int:
    """users list | disable | enable | unlock | set-roles | reset-password, each audited."""
    from domain.users import service as users_service

    command = args.users_command
    password = (
        _read_password(args.username, from_stdin=args.password_stdin)
        if command == "reset-password"
        else None
    )
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            if command == "list":
                for user in await users_service.list_users(session=session):
                    last_login = user.last_login_at.isoformat() if user.last_login_at else "never"
                    status = (
                        "disabled"
                        if user.disabled
                        else (
                            "locked"
                            if user.locked_until and user.locked_until > utcnow()
                            else "active"
                        )
                    )
                    print(
                        f"{printable(user.username):<24} {status:<9} "
                        f"roles={','.join(user.roles)} channels={','.join(user.channels) or '-'} "
                        f"employee={printable(user.employee_id or '-')} "
                        f"last-login={last_login}"
                    )
                return 0
            common = {"session": session, "who": _cli_subject(), "username": args.username}
            operation = f"users {command}"
            if command == "disable":
                user = await users_service.disable_user(**common, operation=operation)
            elif command == "enable":
                user = await users_service.enable_user(**common, operation=operation)
            elif command == "unlock":
                user = await users_service.unlock_user(**common, operation=operation, now=utcnow())
            elif command == "set-roles":
                user = await users_service.set_roles(**common, roles=args.role, operation=operation)
            else:
                assert password is not None
                user = await users_service.reset_password(
                    **common, password=password, operation=operation
                )
            await session.commit()
            print(f"{command}: {user.username} (roles {', '.join(user.roles)})")
            return 0
    finally:
        await engine.dispose()


async def _create_user(settings: Settings, args: argparse.Namespace, password: str) -> None:
    from domain.users import service as users_service

    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            user = await users_service.create_user(
                session=session,
                who=_cli_subject(),
                username=args.username,
                password=password,
                roles=args.role,
                channels=args.channel,
                employee_id=args.employee_id,
                email=args.email,
            )
            await session.commit()
            print(f"created {user.username} with roles {', '.join(user.roles)}")
    finally:
        await engine.dispose()


def _demo_password(settings: Settings) -> tuple[str, bool]:
    """The demo users' password: from ORDERGATE_DEMO_PASSWORD, or generated once into a file
    only this user can read (so a second `make run` can tell you it again)."""
    given = os.environ.get("ORDERGATE_DEMO_PASSWORD")
    if given:
        return given, False
    path = settings.data_dir / "demo-password"
    if path.exists():
        return path.read_text().strip(), False
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    return password, True


async def _demo(settings: Settings, orders: int | None = None) -> None:
    import time

    from domain.demo import demo_username, load_bulk, load_demo

    if settings.production:
        raise SystemExit("refusing to load demo data with ORDERGATE_ENV=production")
    password, generated = _demo_password(settings)
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            result = await load_demo(
                session=session, password=password, now=utcnow(), policy_dir=settings.policy_dir
            )
            await session.commit()
            if orders:
                started = time.monotonic()

                def progress(done: int) -> None:
                    if done % 100_000 < 5_000:
                        print(f"  {done} orders added ({time.monotonic() - started:.0f} s)")

                added = await load_bulk(
                    session=session, orders=orders, now=utcnow(), progress=progress
                )
                await session.commit()
                print(f"bulk: {added} orders added in {time.monotonic() - started:.0f} s")
    finally:
        await engine.dispose()
    print(
        f"demo data: {result.created_orders} orders added "
        f"({'first load' if result.created_orders else 'already loaded'})"
    )
    print("demo users, one per role: " + ", ".join(demo_username(r) for r in ROLES))
    if os.environ.get("ORDERGATE_DEMO_PASSWORD"):
        print("their password: the value of ORDERGATE_DEMO_PASSWORD")
    else:
        where = settings.data_dir / "demo-password"
        new = " (new)" if generated else ""
        print(f"their password{new}: {password}   (kept in {where}, mode 0600)")


async def _cleanse(settings: Settings, args: argparse.Namespace) -> int:
    """`ordergate customers cleanse`: audited under `cli:<user>`; prints the report."""
    from domain.customers import cleanse
    from domain.errors import BadInput

    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            try:
                report = await cleanse.run(
                    session=session,
                    who=_cli_subject(),
                    quarter=args.quarter,
                    timezone=settings.timezone,
                    now=utcnow(),
                )
            except BadInput as exc:
                print(f"ordergate: {exc}", file=sys.stderr)
                return 2
            await session.commit()
    finally:
        await engine.dispose()
    if args.format == "csv":
        sys.stdout.write(cleanse.render_csv(report))
    else:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


async def _reconcile(settings: Settings, args: argparse.Namespace) -> int:
    """`ordergate reconcile`: the operator on the server acts as the channel's integration
    (submitting) and as operations (reading); both are audited under `cli:<user>`."""
    import csv
    import datetime as dt

    from domain.actor import Actor
    from domain.channels.models import DEFAULT_CHANNELS
    from domain.intake import reconciliation

    if args.channel not in DEFAULT_CHANNELS:
        print(f"ordergate: unknown channel {printable(args.channel)!r}", file=sys.stderr)
        return 2
    try:
        day = dt.date.fromisoformat(args.day)
    except ValueError:
        print("ordergate: --day is a date like 2026-11-25", file=sys.stderr)
        return 2
    roles = frozenset({"integration", "ops"})
    subject = _cli_subject()
    actor = Actor(
        user_id=None,
        username=subject.username or "cli",
        roles=roles,
        channels=frozenset(),
        access=PolicyDecisionPoint(settings.policy_dir).profile(roles),
        origin=SYSTEM_ORIGIN,
    )
    rows = []
    if args.snapshot is not None:
        with args.snapshot.open(encoding="utf-8-sig", newline="") as handle:
            for line in csv.DictReader(handle):
                try:
                    rows.append(
                        reconciliation.ChannelView(
                            external_id=line["externalId"],
                            status=reconciliation.OrderStatus(line["status"]),
                            total=line["total"],
                            updated_at=dt.datetime.fromisoformat(line["updatedAt"]),
                        )
                    )
                except (KeyError, ValueError) as exc:
                    print(f"ordergate: {args.snapshot}: bad row {printable(exc)}", file=sys.stderr)
                    return 2
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            for start in range(0, len(rows), reconciliation.MAX_ROWS):
                await reconciliation.submit(
                    session=session,
                    actor=actor,
                    channel=args.channel,
                    business_day=day,
                    rows=rows[start : start + reconciliation.MAX_ROWS],
                )
            report = await reconciliation.reconcile(
                session=session, actor=actor, channel=args.channel, business_day=day
            )
            await session.commit()
    except DomainError as exc:
        print(f"ordergate: {printable(exc.message)}", file=sys.stderr)
        return 2
    finally:
        await engine.dispose()
    sys.stdout.write(reconciliation.report_csv(report))
    print(f"{len(report.differences)} difference(s)", file=sys.stderr)
    return 1 if report.differences else 0


async def _report(settings: Settings, args: argparse.Namespace) -> int:
    from domain.reports import access as access_report

    if args.format == "csv" and args.output is None and sys.stdout.isatty():
        print("ordergate: the csv form is a zip; give --output FILE.zip", file=sys.stderr)
        return 2
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            content, digest, report = await access_report.generate(
                session=session,
                who=_cli_subject(),
                pdp=PolicyDecisionPoint(settings.policy_dir),
                key=checkpoint_key(settings),
                quarter=args.quarter,
                fmt=args.format,
                settings=settings.report,
                now=utcnow(),
                through_seq=args.through_seq,
                operation="report access",
            )
            await session.commit()
    finally:
        await engine.dispose()
    if args.output:
        args.output.write_bytes(content)
        print(
            f"wrote {args.output} (sha256 {digest}, audit through seq {report['throughSeq']})",
            file=sys.stderr,
        )
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(content)
    return 0


async def _sign(settings: Settings, args: argparse.Namespace) -> int:
    """Show the approver what they are about to sign, ask, then print the JWS on stdout."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from sqlalchemy import select

    from domain.approvals import signatures
    from domain.approvals.models import ApprovalRequest, ApprovalStatus, SigningKey

    def refuse(message: str) -> int:
        print(f"ordergate: {message}", file=sys.stderr)
        return 2

    from api.graphql.relay import decode_global_id

    given = str(args.request)
    found = decode_global_id(given)
    if found is not None and found[0] == "ApprovalRequest":
        args.request = str(found[1])  # the id as the API shows it: a global ID
    elif not given.isascii() or not given.isdigit():
        return refuse(
            "--request takes an approval request's id (as the API shows it, or its number), "
            f"not {printable(given)!r}"
        )
    try:
        pem = args.key.read_bytes()
    except OSError as exc:
        return refuse(f"cannot read --key {args.key}: {exc.strerror or exc}")
    if b"PUBLIC KEY" in pem:
        return refuse("--key is a public key; sign with the private key that belongs to it")
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except TypeError:  # encrypted: ask for the passphrase, never take it from an argument
        try:
            passphrase = getpass.getpass(f"passphrase for {args.key}: ").encode()
        except EOFError:
            passphrase = b""
        try:
            private = serialization.load_pem_private_key(pem, password=passphrase or None)
        except (ValueError, TypeError):
            return refuse("wrong passphrase for --key")
    except ValueError:
        return refuse(f"--key {args.key} is not a private key in PEM")
    if not isinstance(private, Ed25519PrivateKey):
        return refuse("--key must be an Ed25519 private key")
    fingerprint = signatures.fingerprint(private.public_key())
    payload: bytes | None = None
    if args.payload:
        try:
            payload = args.payload.read_bytes()
        except OSError as exc:
            return refuse(f"cannot read --payload {args.payload}: {exc.strerror or exc}")
        if payload != payload.rstrip(b"\r\n"):
            # Editors add a final newline; the server signs the exact bytes, without it.
            payload = payload.rstrip(b"\r\n")
            print("ordergate: note: removed the trailing newline from --payload", file=sys.stderr)
    kid = args.kid
    if payload is None or kid is None:
        engine = create_engine(settings.database_url)
        try:
            async with session_factory(engine)() as session:
                if payload is None:
                    request = await session.get(ApprovalRequest, int(args.request))
                    if request is None or request.status is not ApprovalStatus.PENDING:
                        print(
                            f"ordergate: no pending approval request {args.request}",
                            file=sys.stderr,
                        )
                        return 1
                    payload = request.payload.encode()
                if kid is None:
                    key = await session.scalar(
                        select(SigningKey).where(
                            SigningKey.fingerprint == fingerprint, SigningKey.revoked_at.is_(None)
                        )
                    )
                    if key is None:
                        print(
                            "ordergate: this key is not registered (registerSigningKey) or is "
                            "revoked",
                            file=sys.stderr,
                        )
                        return 1
                    kid = str(key.id)
        finally:
            await engine.dispose()
    try:
        content = json.loads(payload)
    except ValueError:
        print("ordergate: the payload is not a signing payload", file=sys.stderr)
        return 1
    if str(content.get("requestId")) != str(args.request):
        print(
            f"ordergate: this payload belongs to request {printable(content.get('requestId'))}",
            file=sys.stderr,
        )
        return 1
    # Everything shown comes from the server and may come from a requester: escape control
    # characters so text cannot redraw the terminal (an ANSI "erase line" over the amount).
    say = printable
    print(
        f"You are signing request {say(content['requestId'])} ({say(content['action'])}):",
        file=sys.stderr,
    )
    print(f"  {say(content['summary'])}", file=sys.stderr)
    print(f"  requested by {say(content['requester'])}: {say(content['reason'])}", file=sys.stderr)
    print(
        f"  valid until {say(content['exp'])}; key {fingerprint[:16]}… (kid {say(kid)})",
        file=sys.stderr,
    )
    if not args.yes:
        print("Sign? [y/N] ", end="", file=sys.stderr, flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            print("not signed", file=sys.stderr)
            return 1
    print(signatures.sign(payload, private, kid))
    return 0


async def _events_check(settings: Settings, args: argparse.Namespace) -> int:
    """Every committed order version has its outbox event: one line per version without one."""
    from domain.events.check import missing_order_events, order_versions

    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            checked = await order_versions(session, since=args.since)
            missing = await missing_order_events(session, since=args.since)
    finally:
        await engine.dispose()
    for order_id, version in missing:
        print(f"MISSING  order {order_id} version {version}: committed without its event")
    versions = sum(checked.values())
    print(
        f"{'FAIL' if missing else 'OK'}  {len(checked)} order(s), {versions} version(s), "
        f"{len(missing)} without an event"
    )
    return 1 if missing else 0


async def _audit_command(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from domain.approvals import service as approvals_service
    from domain.audit import service as audit_service
    from domain.audit.chain import FIELDS
    from domain.audit.keys import CheckpointKey
    from domain.audit.models import AuditCheckpoint

    if args.audit_command == "public-key":
        print(checkpoint_key(settings).public_pem(), end="")
        return 0
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            if args.audit_command == "verify":
                key = (
                    CheckpointKey.from_public_pem(args.public_key.read_bytes())
                    if args.public_key
                    else checkpoint_key(settings)
                )
                external = (
                    [
                        json.loads(line)
                        for line in args.checkpoints.read_text().splitlines()
                        if line.strip()
                    ]
                    if args.checkpoints
                    else []
                )
                started = time.perf_counter()
                result = await audit_service.verify(
                    session=session, key=key, external_checkpoints=external
                )
                elapsed = time.perf_counter() - started
                signed, signature_problems = await approvals_service.verify_signatures(
                    session=session
                )
                for problem in signature_problems:
                    result.fail(None, problem)
                for problem in result.problems:
                    print(f"BAD   {problem}")
                rate = result.events / elapsed if elapsed else 0
                print(
                    f"{'OK' if result.ok else 'FAIL'}  {result.events} events, head seq "
                    f"{result.head_seq}, {result.checkpoints} checkpoint(s) verified "
                    f"({rate:,.0f} events/s)"
                )
                if result.first_bad_seq is not None:
                    print(f"first bad sequence number: {result.first_bad_seq}")
                print(
                    f"{'OK' if not signature_problems else 'FAIL'}  {signed} approval "
                    "signature(s) re-verified against the stored public keys"
                )
                if result.last_checkpoint:
                    print(
                        f"last checkpoint: seq {result.last_checkpoint['seq']} "
                        f"hash {result.last_checkpoint['hash']}"
                    )
                return 0 if result.ok else 1
            if args.audit_command == "checkpoint":
                checkpoint = await audit_service.create_checkpoint(
                    session=session, key=checkpoint_key(settings)
                )
                await session.commit()
                if checkpoint is None:
                    print("nothing new since the last checkpoint")
                else:
                    print(json.dumps(audit_service.checkpoint_record(checkpoint)))
                return 0
            if args.audit_command == "checkpoints":
                rows = await session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq))
                for checkpoint in rows:
                    print(json.dumps(audit_service.checkpoint_record(checkpoint)))
                return 0
            if args.audit_command == "export":
                out = (
                    args.output.open("w", newline="", encoding="utf-8")
                    if args.output
                    else sys.stdout
                )
                try:
                    writer = SafeWriter(out)
                    writer.writerow([*FIELDS, "prev_hash", "hash"])
                    count = 0
                    async for event in audit_service.iter_events(
                        session, time_from=args.time_from, time_to=args.time_to
                    ):
                        event["at"] = event["at"].isoformat()
                        writer.writerow([event[name] for name in (*FIELDS, "prev_hash", "hash")])
                        count += 1
                finally:
                    if args.output:
                        out.close()
                await audit_service.record(
                    session=session,
                    who=_cli_subject(),
                    action="audit.export",
                    operation="audit export",
                    details={
                        "from": args.time_from.isoformat() if args.time_from else None,
                        "to": args.time_to.isoformat() if args.time_to else None,
                        "events": count,
                    },
                )
                await session.commit()
                if args.output:
                    print(f"wrote {count} events to {args.output}", file=sys.stderr)
                return 0
    finally:
        await engine.dispose()
    return 2


def _keys_init(directory: Path) -> int:
    """The three secrets production needs, as files (Docker/Kubernetes secrets): `token-keys`
    for ORDERGATE_TOKEN_KEYS_FILE, `audit-checkpoint-key.pem` for ORDERGATE_AUDIT_KEY_FILE and
    `secrets-key` for ORDERGATE_SECRETS_KEY_FILE. Never overwrites: a lost audit key cannot be
    replaced silently, and a lost secrets key leaves every webhook secret sealed for ever."""
    import os
    import secrets

    from domain.audit.keys import CheckpointKey
    from domain.sealed import Sealer

    token_file = directory / "token-keys"
    audit_file = directory / "audit-checkpoint-key.pem"
    secrets_file = directory / "secrets-key"
    existing = [str(p) for p in (token_file, audit_file, secrets_file) if p.exists()]
    if existing:
        print(f"ordergate: {', '.join(existing)} already exist; not overwriting", file=sys.stderr)
        return 1
    directory.mkdir(parents=True, exist_ok=True)
    kid = f"k{dt.datetime.now(dt.UTC):%Y%m%d}"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"{kid}:{secrets.token_urlsafe(48)}\n")
    key = CheckpointKey.generate_into(audit_file)
    Sealer.write_new_key(secrets_file)
    print(f"wrote {token_file}, {audit_file} and {secrets_file} (mode 0600)")
    print(f"audit checkpoint public key (keep a copy elsewhere):\n{key.public_pem()}")
    return 0


async def _seal_secrets(settings: Settings) -> int:
    """Webhook secrets stored as given (before sealing existed, or under a key no longer
    first), sealed under the first key; returns how many."""
    from api.settings import sealer
    from domain.audit import service as audit_service
    from domain.events.webhooks import reseal_secrets

    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            count = await reseal_secrets(session=session, sealer=sealer(settings))
            if count:
                await audit_service.record(
                    session=session,
                    who=_cli_subject(),
                    action="webhook.seal_secrets",
                    operation="migrate",
                    target_type="Webhook",
                    target_id=None,
                    details={"webhooks": count},
                )
            await session.commit()
            return count
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "keys":  # before settings: production refuses to load without them
        return _keys_init(args.dir)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"ordergate: {exc}", file=sys.stderr)
        return 2
    try:
        return _dispatch(args, settings)
    except DomainError as exc:
        print(f"ordergate: {exc.message}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        import uvicorn

        from api.app import create_app
        from api.startup import StartupError, check_before_serving

        try:
            state = check_before_serving(settings, allow_unmigrated=args.allow_unmigrated)
        except StartupError as exc:
            print(f"ordergate: {exc}", file=sys.stderr)
            return 2
        from sqlalchemy.engine import make_url

        from api.logging import configure_logging

        configure_logging()
        logging.getLogger("ordergate.app").info(
            "starting",
            extra={
                "mode": settings.env,
                "address": f"http://{args.host}:{args.port}",
                "database": make_url(settings.database_url).render_as_string(hide_password=True),
                "revision": state["revision"],
                "policy_version": PolicyDecisionPoint(settings.policy_dir).version,
            },
        )
        if state["revision"] != state["expected"]:
            print(
                f"ordergate: serving a database at revision {state['revision']} although the "
                f"code expects {state['expected']} (--allow-unmigrated); /readyz says not ready",
                file=sys.stderr,
            )
        if args.workers < 1:
            print("ordergate: --workers takes a number of processes, 1 or more", file=sys.stderr)
            return 2
        options = {
            "host": args.host,
            "port": args.port,
            "log_config": None,
            "proxy_headers": False,
            "server_header": False,
        }
        if args.workers == 1:
            uvicorn.run(create_app(settings), **options)
        else:
            # Each worker builds its app from the same environment (api.app:create_app); a
            # SIGHUP to this process restarts the workers, which reloads the policy too.
            # Each worker listens on its own socket where the system allows (api/supervisor.py).
            from api import supervisor

            if supervisor.reuse_port_supported():
                config = uvicorn.Config(
                    "api.app:create_app", factory=True, workers=args.workers, **options
                )
                supervisor.run(config)
            else:
                uvicorn.run("api.app:create_app", factory=True, workers=args.workers, **options)
        return 0
    if args.command == "worker":
        from api import worker as worker_process
        from api.logging import configure_logging
        from api.startup import StartupError, check_before_serving

        # The same checks as `serve` (issue #29: a worker started on an unmigrated database and
        # logged a traceback every round, about 0.9 GB a day).
        try:
            check_before_serving(settings)
        except StartupError as exc:
            print(f"ordergate: {exc}", file=sys.stderr)
            return 2
        configure_logging()
        ok = asyncio.run(worker_process.run(settings, once=args.once))
        return 0 if ok else 1  # `--once` whose round failed: exit 1, not 0 after an error
    if args.command == "migrate":
        from domain.migrations import run_migrations

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        run_migrations(settings.database_url)
        print("database at the latest migration")
        sealed = asyncio.run(_seal_secrets(settings))
        if sealed:
            print(f"sealed {sealed} webhook secret(s) kept as given before")
        return 0
    if args.command == "demo":
        if args.orders is not None and not 0 < args.orders <= 10_000_000:
            print("ordergate: --orders takes a number from 1 to 10000000", file=sys.stderr)
            return 2
        asyncio.run(_demo(settings, args.orders))
        return 0
    if args.command == "users":
        if args.users_command == "create":
            password = _read_password(args.username, from_stdin=args.password_stdin)
            asyncio.run(_create_user(settings, args, password))
            return 0
        return asyncio.run(_administer_users(settings, args))
    if args.command == "audit":
        return asyncio.run(_audit_command(settings, args))
    if args.command == "report":
        return asyncio.run(_report(settings, args))
    if args.command == "events":
        return asyncio.run(_events_check(settings, args))
    if args.command == "sign":
        return asyncio.run(_sign(settings, args))
    if args.command == "reconcile":
        return asyncio.run(_reconcile(settings, args))
    if args.command == "customers":
        return asyncio.run(_cleanse(settings, args))
    if args.command == "policy":
        pdp = PolicyDecisionPoint(settings.policy_dir)
        if args.policy_command == "explain":
            if args.role not in ROLES:
                print(
                    f"ordergate: unknown role {printable(args.role)!r}; roles: {', '.join(ROLES)}",
                    file=sys.stderr,
                )
                return 2
            if args.field not in COORDINATES:
                types = ", ".join(sorted({c.split(".")[0] for c in COORDINATES}))
                print(
                    f"ordergate: {printable(args.field)!r} is not a governed Type.field "
                    f"(types: {types}; for example Order.grossMargin)",
                    file=sys.stderr,
                )
                return 2
            decision = pdp.explain(args.role, args.field)
            print(f"{args.role} on {args.field}: {decision.access}")
            for line in decision.lines:
                print(f"  {line}")
            if decision.access is FieldAccess.NONE and all(
                "no matching" in x for x in decision.lines
            ):
                print("  (denied by default: no line grants it)")
            return 0
        problems = pdp.check(ROLES)
        for problem in problems:
            print(problem)
        print(f"policy {pdp.version}: {len(problems)} problem(s)")
        return 1 if problems else 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
