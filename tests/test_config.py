"""Configuration: defaults, file errors named by file and key, environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ConfigError, Settings, load_settings, parse_override

REPO = Path(__file__).resolve().parents[1]


def test_repo_config_equals_defaults():
    # config.yaml documents every default; the loader and the file must agree
    assert load_settings(REPO / "config.yaml", env={}) == Settings()


def test_spec_section_10_defaults():
    s = Settings()
    assert (s.rolling_window_minutes, s.va_fraction, s.base_bin_ticks, s.alpha_bin) == (240, 0.70, 1, 0.25)
    assert (s.bin_width_max_ticks, s.rebucket_interval_minutes, s.rebucket_change_pct) == (200, 15, 0.25)
    assert (s.max_quote_staleness_ms, s.ambiguous_trade_frac_max, s.use_tick_rule_fallback) == (250, 0.35, False)
    assert (s.qimb_entry_min, s.qimb_breakout_min, s.qimb_fail_min, s.accept_outside_k) == (0.10, 0.10, -0.10, 3)
    assert (s.max_hold_minutes, s.cooldown_minutes, s.stop_buffer_ticks) == (60, 3, 2)
    assert (s.slippage_ticks_entry, s.slippage_ticks_exit, s.taker_fee_bps, s.maker_fee_bps) == (1, 1, 5, -1)
    assert (s.tick_size, s.bvc_lookback, s.feed_stale_halt_ms) == (0.1, 60, 5000)


@pytest.mark.parametrize(
    "text, words",
    [
        ("alpha_bin: 0.3\nbogus_key: 1\n", ["unknown key 'bogus_key'"]),
        ("accept_outside_k: three\n", ["accept_outside_k", "integer"]),
        ("va_fraction: 1.5\n", ["va_fraction", "outside"]),
        ("use_qimb: 1\n", ["use_qimb", "true or false"]),
        ("fee_model: cheap\n", ["fee_model", "taker"]),
        ("- a\n- b\n", ["mapping"]),
        ("alpha_bin: [1\n", ["not valid YAML"]),
        ("order_qty: 0.0015\n", ["order_qty", "qty_step"]),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, words):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert str(path) in str(err.value)
    for w in words:
        assert w in str(err.value)


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(tmp_path / "nope.yaml", env={})


def test_environment_overrides_and_their_errors(tmp_path):
    s = load_settings(None, env={"PBDTUI_ALPHA_BIN": "0.4", "PBDTUI_USE_QIMB": "false", "HOME": "/x"})
    assert s.alpha_bin == 0.4 and s.use_qimb is False
    with pytest.raises(ConfigError, match="environment: unknown key 'nope'"):
        load_settings(None, env={"PBDTUI_NOPE": "1"})
    with pytest.raises(ConfigError, match="va_fraction"):
        load_settings(None, env={"PBDTUI_VA_FRACTION": "7"})


def test_settings_are_frozen_and_replace_validates():
    s = Settings()
    with pytest.raises(AttributeError):
        s.alpha_bin = 1.0  # type: ignore[misc]
    assert s.replace(alpha_bin=0.5).alpha_bin == 0.5
    with pytest.raises(ConfigError, match="accept_outside_k"):
        s.replace(accept_outside_k=0)
    assert parse_override("alpha_bin=0.3") == ("alpha_bin", 0.3)
    with pytest.raises(ConfigError, match="unknown key 'zzz'"):
        parse_override("zzz=1")


def test_cli_reports_config_error_with_exit_code_2(tmp_path, capsys):
    from pbdtui.cli import main

    path = tmp_path / "c.yaml"
    path.write_text("bogus: 1\n")
    assert main(["features", "--db", str(tmp_path / "x.db"), "--config", str(path)]) == 2
    assert "unknown key 'bogus'" in capsys.readouterr().err
