"""Configuration: defaults, file errors named by file and key, environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ConfigError, Settings, load_settings

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
    with pytest.raises(ConfigError, match="environment: PBDTUI_NOPE is not a setting"):
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


def test_cli_reports_config_error_with_exit_code_2(tmp_path, capsys):
    from pbdtui.cli import main

    path = tmp_path / "c.yaml"
    path.write_text("bogus: 1\n")
    assert main(["features", "--db", str(tmp_path / "x.db"), "--config", str(path)]) == 2
    assert "unknown key 'bogus'" in capsys.readouterr().err


# --- reading rules (issue 7 item 7) ----------------------------------------------------


@pytest.mark.parametrize("text, key, value", [
    ("alpha_bin: 1e-4", "alpha_bin", 1e-4),
    ("alpha_bin: 2.5E-1", "alpha_bin", 0.25),
    ("alpha_bin: .5", "alpha_bin", 0.5),
    ("max_daily_loss: 1_000", "max_daily_loss", 1000.0),
    ("use_qimb: False", "use_qimb", False),
    ("cooldown_minutes: +4", "cooldown_minutes", 4),
])
def test_numbers_in_ordinary_notation_and_true_false_are_read(tmp_path, text, key, value):
    path = tmp_path / "c.yaml"
    path.write_text(text + "\n")
    assert getattr(load_settings(path, env={}), key) == value


@pytest.mark.parametrize("text, words", [
    ("cooldown_minutes: 0x10", ["cooldown_minutes", "expected an integer", "'0x10'"]),
    ("cooldown_minutes: 0o7", ["cooldown_minutes", "expected an integer"]),
    ("use_qimb: yes", ["use_qimb", "expected true or false", "'yes'"]),
    ("use_qimb: on", ["use_qimb", "expected true or false"]),
    ("max_hold_minutes: 1:30", ["max_hold_minutes", "expected an integer"]),
])
def test_other_notations_are_refused_with_the_key(tmp_path, text, words):
    path = tmp_path / "c.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert all(w in str(err.value) for w in words), str(err.value)


def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("alpha_bin: 0.2\nva_fraction: 0.7\nalpha_bin: 0.3\n")
    with pytest.raises(ConfigError, match=r"key 'alpha_bin' is given twice \(lines 1 and 3\)"):
        load_settings(path, env={})


def test_every_error_in_a_file_is_reported_at_once(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("alpha_bin: -1\nnope: 3\nuse_qimb: maybe\ncooldown_minutes: 2\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    lines = str(err.value).splitlines()
    assert len(lines) == 3
    assert "alpha_bin" in lines[0] and "nope" in lines[1] and "use_qimb" in lines[2]


def test_lower_case_environment_names_are_not_settings():
    with pytest.raises(ConfigError, match="PBDTUI_alpha_bin is not a setting"):
        load_settings(None, env={"PBDTUI_alpha_bin": "0.3"})
    assert load_settings(None, env={"PBDTUI_ALPHA_BIN": "3e-1"}).alpha_bin == 0.3


def test_config_that_is_not_utf8_is_a_one_line_error(tmp_path, capsys):
    from pbdtui.cli import main

    path = tmp_path / "c.yaml"
    path.write_bytes(b"alpha_bin: 0.3\n# caf\xe9\n")
    assert main(["features", "--db", str(tmp_path / "x.db"), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "line 2: not UTF-8 text (byte 0xe9)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.db").exists()


def test_settings_nothing_reads_are_refused_unless_honoured(tmp_path):
    with pytest.raises(ConfigError, match="fill_on_next_quote"):
        Settings().replace(fill_on_next_quote=False)
    with pytest.raises(ConfigError, match="timeframe"):
        Settings().replace(timeframe="5m")
    with pytest.raises(ConfigError, match="instrument"):
        Settings().replace(instrument="ETHUSDT_PERP")
    # the instrument name follows the symbol
    assert Settings().replace(symbol="ETHUSDT").instrument == "ETHUSDT_PERP"
    path = tmp_path / "c.yaml"
    path.write_text("symbol: XRPUSDT\n")
    assert load_settings(path, env={}).instrument == "XRPUSDT_PERP"
