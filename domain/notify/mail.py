"""Sending mail: SMTP when `ORDERGATE_SMTP_URL` is set, else (development) each message is
written to a file under the data directory and logged, so `make run` needs no mail server.

Python's own `smtplib` and `email` do the work (well kept, in the standard library); a send
runs in a thread so the event loop never waits on a mail server. The URL names the server:
`smtp://host:25` (plain, for a relay on the same network), `smtp+starttls://user:pass@host:587`
or `smtps://user:pass@host:465`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from urllib.parse import unquote, urlsplit

log = logging.getLogger("ordergate.mail")


class MailError(Exception):
    """The message could not be handed to the mail server."""


@dataclass(frozen=True)
class Mailer:
    sender: str
    smtp_url: str | None = None
    outbox_dir: Path | None = None  # development: where messages are written instead
    timeout: float = 20.0

    def message(self, *, to: list[str], subject: str, body: str, at: dt.datetime) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(to)
        msg["Subject"] = subject
        msg["Date"] = format_datetime(at)
        msg["Message-ID"] = make_msgid(domain="ordergate")
        msg.set_content(body)
        return msg

    async def send(self, msg: EmailMessage) -> None:
        try:
            await asyncio.to_thread(self._send, msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(f"{type(exc).__name__}: {exc}") from exc

    def _send(self, msg: EmailMessage) -> None:
        if self.smtp_url is None:
            self._keep(msg)
            return
        url = urlsplit(self.smtp_url)
        host, port = url.hostname or "localhost", url.port
        if url.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port or 465, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(host, port or 25, timeout=self.timeout)
        with client:
            if url.scheme == "smtp+starttls":
                client.starttls(context=ssl.create_default_context())
            if url.username:
                client.login(unquote(url.username), unquote(url.password or ""))
            client.send_message(msg)

    def _keep(self, msg: EmailMessage) -> None:
        target = self.outbox_dir or Path("var/mail")
        target.mkdir(parents=True, exist_ok=True)
        name = str(msg["Message-ID"]).strip("<>").replace("@", "_").replace("/", "_")
        path = target / f"{name}.eml"
        path.write_bytes(bytes(msg))
        log.info("mail kept (no ORDERGATE_SMTP_URL)", extra={"path": str(path)})
