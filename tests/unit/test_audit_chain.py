import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from domain.audit.chain import (
    FIELDS,
    canonical_json,
    digest_around_seq,
    event_digest_input,
    format_time,
    stored_time,
)

text = st.one_of(st.none(), st.text(max_size=40))
events = st.fixed_dictionaries(
    {
        "seq": st.integers(min_value=1, max_value=2**62),
        "at": st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=8))])),
        "actor_id": st.one_of(st.none(), st.integers(min_value=1, max_value=10**9)),
        **{name: text for name in FIELDS if name not in ("seq", "at", "actor_id")},
    }
)


@given(events)
def test_the_fast_digest_input_is_exactly_the_canonical_json(event: dict) -> None:
    expected = canonical_json({**event, "at": format_time(event["at"])}).encode()

    assert event_digest_input(event) == expected


@given(events)
def test_the_halves_around_seq_make_the_digest_input_the_database_seal_hashes(event: dict) -> None:
    """PostgreSQL's seal (migration 0009) hashes prev ‖ before ‖ seq ‖ after; it must be the
    same bytes the app and `verify` hash."""
    before, after = digest_around_seq({k: v for k, v in event.items() if k != "seq"})

    assert (before + str(event["seq"]) + after).encode() == event_digest_input(event)


def test_times_are_written_in_utc_with_microseconds() -> None:
    shanghai = dt.timezone(dt.timedelta(hours=8))

    assert (
        format_time(dt.datetime(2026, 7, 1, 8, 0, tzinfo=shanghai)) == "2026-07-01T00:00:00.000000Z"
    )


# hypothesis takes naive bounds and applies `timezones` to the values it draws
@given(st.datetimes(min_value=dt.datetime(1000, 1, 1), timezones=st.just(dt.UTC)))  # noqa: DTZ001
def test_stored_sqlite_times_convert_without_parsing(value: dt.datetime) -> None:
    stored = value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")

    assert stored_time(stored) == format_time(value)
    assert stored_time(value) == format_time(value)


def test_stored_times_in_other_textual_forms_are_canonicalised_too() -> None:
    # Written by another tool: no microseconds, or with a zone designator.
    assert stored_time("2026-07-01 00:30:00") == "2026-07-01T00:30:00.000000Z"
    assert stored_time("2026-07-01 00:30:00.000000Z") == "2026-07-01T00:30:00.000000Z"
    assert stored_time("2026-07-01T00:30:00.000001") == "2026-07-01T00:30:00.000001Z"
