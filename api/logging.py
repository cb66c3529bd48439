"""JSON log lines, one object per line, with the request id wherever there is one."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """ordergate's own loggers at `level`, and every other library's warnings and errors
    (uvicorn, websockets, strawberry, asyncio…) as JSON lines too: without a handler of
    their own they fell through to Python's last-resort handler, which printed multi-line
    tracebacks into the JSON log (issue #29)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    ours = logging.getLogger("ordergate")
    ours.handlers[:] = [handler]
    ours.setLevel(level)
    ours.propagate = False
    root = logging.getLogger()
    # Replace an earlier call's handler, keep anybody else's (a test runner's capture).
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "_ordergate", False)]
    others = logging.StreamHandler(sys.stderr)
    others.setFormatter(JsonFormatter())
    others.setLevel(logging.WARNING)
    others._ordergate = True  # type: ignore[attr-defined]
    root.addHandler(others)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
