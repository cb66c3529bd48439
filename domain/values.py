"""What a value from outside may be: the one place that says so for money, ids and free text.

Every entry point — GraphQL scalars and arguments, export filters, cursors, the CLI — parses
through these functions, so a form refused in one place is refused everywhere.

- Numbers are ASCII digits only. `str.isdigit()` and `\\d` also accept `"²"`, `"١٢"` and
  `"１２"`, and `Decimal` accepts exponents (`"1e999990"` builds a million-digit integer);
  neither is used on outside input.
- Every number must fit the column that will hold it (32-bit integers for ids, counts and
  money in minor units), so a value the database would refuse never reaches it.
- Free text is valid Unicode without control characters (C0 and C1, NUL included), without
  bidirectional overrides or isolates (which can make a reason read differently from what it
  says), without lone surrogates, and within a length that its use needs.
"""

from __future__ import annotations

import datetime as dt
import re

from domain.errors import BadInput

INT4_MAX = 2**31 - 1  # what an INTEGER column holds on PostgreSQL

# Money is stored in minor units in INTEGER columns; an amount whose minor units do not fit is
# refused (the largest CNY amount is 21,474,836.47). Totals computed from amounts are checked
# against the same bound before they are written.
MAX_MINOR = INT4_MAX

# ISO 4217 minor-unit exponents for the currencies ordergate's channels settle in.
MINOR_UNITS = {"CNY": 2, "USD": 2, "EUR": 2, "HKD": 2, "JPY": 0}
MAX_DECIMALS = max(MINOR_UNITS.values())

_ASCII_DIGITS = re.compile(r"[0-9]+")
# At most 10 integer digits (more can never fit), at most 4 decimals (the contract's form).
_AMOUNT = re.compile(r"(?P<whole>[0-9]{1,10})(?:\.(?P<fraction>[0-9]{1,4}))?")

# Bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069).
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f" + _BIDI + "\ud800-\udfff]")
_FORBIDDEN_EXCEPT_LINES = re.compile(
    "[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f" + _BIDI + "\ud800-\udfff]"
)

DEFAULT_TEXT_LENGTH = 1000


def exponent(currency: str) -> int:
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise BadInput(f"unsupported currency {currency!r}") from None


def parse_amount(value: object, currency: str | None = None, *, what: str = "amount") -> int:
    """A decimal string (`"129.90"`) as minor units of `currency`.

    Without a currency (the GraphQL scalar, before the object is known) the amount is checked
    for form and for the largest exponent; the service converts it again with its currency.
    """
    if not isinstance(value, str):
        raise BadInput(f'{what} is a decimal string such as "129.90"')
    match = _AMOUNT.fullmatch(value)
    if match is None:
        raise BadInput(f'{what} is a decimal string such as "129.90" (ASCII digits, one ".")')
    places = exponent(currency) if currency is not None else MAX_DECIMALS
    fraction = (match["fraction"] or "").rstrip("0")
    if len(fraction) > places:
        raise BadInput(
            f"{what} has more decimals than {currency or 'any supported currency'} allows"
        )
    minor = int(match["whole"]) * 10**places + int(fraction.ljust(places, "0") or "0")
    if minor > MAX_MINOR:
        largest = format_minor(MAX_MINOR, places)
        raise BadInput(f"{what} is larger than the largest amount kept ({largest})")
    return minor


def format_minor(minor: int, places: int) -> str:
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**places)
    return f"{sign}{whole}.{fraction:0{places}d}" if places else f"{sign}{whole}"


def check_minor(minor: int, *, what: str) -> int:
    """A computed amount (a total) must fit its column too."""
    if minor > MAX_MINOR:
        raise BadInput(f"{what} would exceed the largest amount kept")
    return minor


# The days a business time or date may name: wide enough for any order, count or report,
# narrow enough that a window or a day boundary computed from it never leaves the calendar
# (year 1 or 9999 made KPI queries and stock counts fail with INTERNAL; issue #29, #30 L6).
FIRST_DAY = dt.date(1900, 1, 1)
LAST_DAY = dt.date(2999, 12, 31)


def check_day(day: dt.date, *, what: str) -> dt.date:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise BadInput(f"{what} must be between {FIRST_DAY} and {LAST_DAY}")
    return day


def parse_day(value: object, *, what: str) -> dt.date:
    """A calendar date `YYYY-MM-DD` within FIRST_DAY..LAST_DAY."""
    if not isinstance(value, str) or len(value) != 10 or not value.isascii():
        raise BadInput(f"{what} is a date like 2026-11-26")
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{what} is not a date like 2026-11-26") from None
    return check_day(day, what=what)


def parse_time(value: object, *, what: str) -> dt.datetime:
    """An ISO 8601 time with an offset, as UTC. Naive times, and times whose UTC instant falls
    outside FIRST_DAY..LAST_DAY (`0001-01-01T00:00:00+05:00`), are refused."""
    if not isinstance(value, str) or len(value) > 64:
        raise BadInput(f"{what} is an ISO 8601 time with an offset")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{what} is not an ISO 8601 time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise BadInput(f"{what} has no offset; naive timestamps are refused")
    try:
        found = parsed.astimezone(dt.UTC)
    except OverflowError:
        raise BadInput(f"{what} is outside the supported range of years") from None
    check_day(found.date(), what=what)
    return found


def parse_int_id(value: object, *, what: str) -> int:
    """An id as we issue them: ASCII digits, 1 to 2³¹−1."""
    text = str(value)
    if len(text) > 10 or _ASCII_DIGITS.fullmatch(text) is None:
        raise BadInput(f"{text[:40]!r} is not a valid {what} id")
    number = int(text)
    if not 0 < number <= INT4_MAX:
        raise BadInput(f"{text!r} is not a valid {what} id")
    return number


def is_int4(value: object) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and -INT4_MAX - 1 <= value <= INT4_MAX
    )


def text_problem(value: str, *, allow_newlines: bool = False) -> str | None:
    """Why a string may not be stored or shown, or None when it is fine."""
    pattern = _FORBIDDEN_EXCEPT_LINES if allow_newlines else _FORBIDDEN
    found = pattern.search(value)
    if found is None:
        return None
    char = found.group()
    if "\ud800" <= char <= "\udfff":
        return "contains a lone surrogate (not valid Unicode)"
    if char in _BIDI:
        return f"contains a bidirectional control character (U+{ord(char):04X})"
    return f"contains a control character (U+{ord(char):04X})"


def clean_text(
    value: str,
    *,
    what: str,
    max_length: int = DEFAULT_TEXT_LENGTH,
    required: bool = False,
    allow_newlines: bool = False,
) -> str:
    """Free text from outside, stripped, refused when it could mislead or not be stored."""
    if not isinstance(value, str):
        raise BadInput(f"{what} is text")
    problem = text_problem(value, allow_newlines=allow_newlines)
    if problem is not None:
        raise BadInput(f"{what} {problem}")
    value = value.strip()
    if required and not value:
        raise BadInput(f"give {what}")
    if len(value) > max_length:
        raise BadInput(f"{what} is longer than {max_length} characters")
    return value


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """Text from the server, made safe for a terminal: every control, bidi and surrogate
    character is shown as an escape instead of acting on the screen."""
    return _FORBIDDEN.sub(_escape, str(value))


def printable_lines(value: object) -> str:
    """As `printable`, keeping line breaks (a note of several lines in a CSV cell)."""
    return _FORBIDDEN_EXCEPT_LINES.sub(_escape, str(value))
