"""Every CSV ordergate writes goes through this writer.

- It starts with a UTF-8 byte order mark, so spreadsheet programs read Chinese text right.
- A cell that a spreadsheet would run as a formula — one starting with `=`, `+`, `-`, `@`, a
  tab or a carriage return (OWASP, "CSV Injection") — is written with a leading `'`, which
  makes it text. A plain number (`-12.50`) is left as it is: it is not a formula, and finance
  needs negative margins to stay numbers. The stored data never changes; only the file does.
- Control characters other than line breaks, and bidi overrides, are written as escapes
  (`\\x9b`), so a file printed to a terminal cannot act on it.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any, TextIO

from domain.values import printable_lines

BOM = "\ufeff"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def neutralise(value: Any) -> str:
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_START) and _PLAIN_NUMBER.fullmatch(text) is None:
        text = "'" + text
    # Control characters (C0 but line breaks, C1 such as U+009B, the terminal's CSI) and bidi
    # overrides are written as escapes: a CSV printed to a terminal or opened in an editor
    # must not act on the screen (a User-Agent in the audit export did; issue #30, L7).
    return printable_lines(text)


class SafeWriter:
    """`csv.writer` whose every cell is neutralised; writes the BOM on creation."""

    def __init__(self, out: TextIO, *, bom: bool = True, **options: Any) -> None:
        if bom:
            out.write(BOM)
        self._writer = csv.writer(out, **options)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([neutralise(cell) for cell in row])
