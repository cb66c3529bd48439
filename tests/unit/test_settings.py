from pathlib import Path

import pytest

from api.settings import SettingsError, load_settings, normalise_database_url


def test_production_refuses_to_start_without_an_explicit_token_key(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="ORDERGATE_TOKEN_KEYS"):
        load_settings({"ORDERGATE_ENV": "production", "ORDERGATE_DATA_DIR": str(tmp_path)})


def test_development_generates_a_key_file_only_its_owner_can_read(tmp_path: Path) -> None:
    first = load_settings({"ORDERGATE_DATA_DIR": str(tmp_path)})
    second = load_settings({"ORDERGATE_DATA_DIR": str(tmp_path)})

    key_file = tmp_path / "dev-token-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first.token_keys == second.token_keys


def test_short_token_secrets_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError):
        load_settings({"ORDERGATE_TOKEN_KEYS": "k1:short", "ORDERGATE_DATA_DIR": str(tmp_path)})


def test_business_timezone_defaults_to_shanghai(tmp_path: Path) -> None:
    assert str(load_settings({"ORDERGATE_DATA_DIR": str(tmp_path)}).timezone) == "Asia/Shanghai"


def test_plain_database_urls_get_async_drivers() -> None:
    assert normalise_database_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert normalise_database_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"


def test_kpi_thresholds_default_to_95_98_and_90_percent_and_can_be_set(tmp_path: Path) -> None:
    """The documented defaults (README: KPIs), stated once in the domain: issue #28 found 95
    written in two places, so changing either alone went unnoticed."""
    from decimal import Decimal

    plain = load_settings({"ORDERGATE_DATA_DIR": str(tmp_path)}).kpi_thresholds
    set_ = load_settings(
        {"ORDERGATE_DATA_DIR": str(tmp_path), "ORDERGATE_KPI_TIMELINESS_MIN": "97.5"}
    ).kpi_thresholds

    assert (plain.timeliness, plain.stock_accuracy, plain.completeness) == (
        Decimal("95"),
        Decimal("98"),
        Decimal("90"),
    )
    assert set_.timeliness == Decimal("97.5")
