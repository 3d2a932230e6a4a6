"""Typed, frozen settings loaded from ``config.yaml``.

One flat tree, as in spec.md section 10. Every key is declared once in
``_FIELDS`` with its type and allowed range; loading rejects unknown keys,
wrong types and out-of-range values with a message naming the key and the
file. Environment variables ``PBDTUI_<KEY>`` override the file (values are
parsed as YAML scalars, then checked like the file's). API keys are never
part of the settings: they are read from the environment by the exchange
edge only.

The engine's kernels never see this object: ``engine.kernels.params`` turns
it into a plain float64 vector.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "PBDTUI_"


class ConfigError(ValueError):
    """A configuration problem, with the file and key in the message."""


@dataclass(frozen=True)
class Settings:
    """All settings. Field docs live in config.yaml; ranges in ``_RULES``."""

    instrument: str = "BTCUSDT_PERP"
    timeframe: str = "1m"
    rolling_window_minutes: int = 240
    va_fraction: float = 0.70
    base_bin_ticks: int = 1
    alpha_bin: float = 0.25
    bin_width_max_ticks: int = 200
    rebucket_interval_minutes: int = 15
    rebucket_change_pct: float = 0.25
    max_quote_staleness_ms: int = 250
    ambiguous_trade_frac_max: float = 0.35
    use_tick_rule_fallback: bool = False
    use_qimb: bool = True
    qimb_entry_min: float = 0.10
    qimb_breakout_min: float = 0.10
    qimb_fail_min: float = -0.10
    of_entry_min: float = 0.0
    of_breakout_min: float = 0.0
    of_fail_min: float = 0.0
    accept_outside_k: int = 3
    max_hold_minutes: int = 60
    cooldown_minutes: int = 3
    stop_buffer_ticks: int = 2
    fill_on_next_quote: bool = True
    slippage_ticks_entry: int = 1
    slippage_ticks_exit: int = 1
    taker_fee_bps: float = 5.0
    maker_fee_bps: float = -1.0
    funding_model: str = "simple"
    symbol: str = "BTCUSDT"
    tick_size: float = 0.1
    qty_step: float = 0.001
    bvc_lookback: int = 60
    qimb_ema_span: int = 10
    feed_stale_halt_ms: int = 5000
    failbreak_lookback: int = 5
    breakout_retest: bool = False
    retest_window_minutes: int = 10
    retest_buffer_ticks: int = 2
    target: str = "tp1"
    breakout_target_va_multiple: float = 1.0
    flip_on_signal: bool = False
    order_qty: float = 0.001
    max_daily_loss: float = 5.0
    daily_reset_hour_utc: int = 0
    slippage_bps: float = 0.0
    fee_model: str = "taker"
    funding_rate_default: float = 0.0001
    retention_hours: int = 48
    min_window_coverage: float = 0.95
    min_reward_risk: float = 0.0
    shape_min_bins: int = 5
    shape_p_poc_min: float = 0.65
    shape_skew_min: float = 0.25
    shape_thin_va_frac: float = 0.60
    shape_hvn_frac: float = 0.50
    shape_lvn_depth: float = 0.70
    htf_bias: str = "none"
    htf_rolling_minutes: int = 1440
    shape_long: str = "any"
    shape_short: str = "any"
    shape_filter_setups: str = "all"
    plausible_from: str = "2015-01-01"
    plausible_until_days: float = 1.0
    ws_url: str = "mainnet"
    archive_trades_url: str = "https://public.bybit.com/trading"
    archive_book_url: str = "https://quote-saver.bycsi.com/orderbook/linear"

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and checked like a file's values."""
        return self._replace(changes, "<override>")

    def _replace(self, changes: dict[str, Any], source: str) -> Settings:
        changes = dict(changes)
        # an instrument name that followed the symbol keeps following it
        if "symbol" in changes and "instrument" not in changes and self.instrument == _perp(self.symbol):
            changes["instrument"] = _perp(str(changes["symbol"]))
        return _build(dataclasses.asdict(self) | changes, source)


# the profile shapes shape_long / shape_short name (engine.types.SHAPE_NAMES)
_SHAPES = ("D", "P", "b", "thin", "double")

# key -> (low, high) inclusive numeric bounds, or a tuple of allowed strings.
_RULES: dict[str, tuple[Any, ...]] = {
    "timeframe": ("1m",),
    "rolling_window_minutes": (2, 100_000),
    "va_fraction": (1e-9, 1.0),
    "base_bin_ticks": (1, 1_000_000),
    "alpha_bin": (0.0, 1e6),
    "bin_width_max_ticks": (1, 10_000_000),
    "rebucket_interval_minutes": (1, 100_000),
    "rebucket_change_pct": (0.0, 1e6),
    "max_quote_staleness_ms": (0, 10**9),
    "ambiguous_trade_frac_max": (0.0, 1.0),
    "qimb_entry_min": (-1.0, 1.0),
    "qimb_breakout_min": (-1.0, 1.0),
    "qimb_fail_min": (-1.0, 1.0),
    "accept_outside_k": (1, 60),  # the setups look back at most 62 minutes (LB_SIZE - 2)
    "max_hold_minutes": (1, 10**7),
    "cooldown_minutes": (0, 10**7),
    "stop_buffer_ticks": (0, 10**9),
    "slippage_ticks_entry": (0, 10**6),
    "slippage_ticks_exit": (0, 10**6),
    "taker_fee_bps": (-100.0, 100.0),
    "maker_fee_bps": (-100.0, 100.0),
    "funding_model": ("simple", "replay", "flat"),
    "tick_size": (1e-12, 1e9),
    "qty_step": (1e-12, 1e9),
    "bvc_lookback": (1, 100_000),
    "qimb_ema_span": (1, 100_000),
    "feed_stale_halt_ms": (0, 10**9),
    "failbreak_lookback": (1, 60),
    "retest_window_minutes": (1, 10_000),
    "retest_buffer_ticks": (0, 10**9),
    "target": ("tp1", "tp2", "none", "naked_poc"),
    "breakout_target_va_multiple": (0.0, 1000.0),
    "order_qty": (1e-12, 1e9),
    "max_daily_loss": (0.0, 1e12),
    "daily_reset_hour_utc": (0, 23),
    "slippage_bps": (0.0, 10_000.0),
    "fee_model": ("taker", "maker"),
    "funding_rate_default": (-1.0, 1.0),
    "retention_hours": (1, 10**6),
    "min_window_coverage": (0.0, 1.0),
    "min_reward_risk": (0.0, 1000.0),
    "shape_min_bins": (1, 1_000_000),
    "shape_p_poc_min": (0.5, 1.0),
    "shape_skew_min": (0.0, 1000.0),
    "shape_thin_va_frac": (0.0, 1.0),
    "shape_hvn_frac": (0.0, 1.0),
    "shape_lvn_depth": (0.0, 1.0),
    "htf_bias": ("none", "prev_day", "day", "rolling"),
    "htf_rolling_minutes": (1, 100_000),
    "shape_filter_setups": ("all", "breakin", "breakout", "failbreak"),
    "plausible_until_days": (0.0, 36_500.0),
}

_FIELDS: dict[str, type] = {f.name: f.type for f in dataclasses.fields(Settings)}  # type: ignore[misc]
_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _check_value(key: str, value: Any, source: str) -> Any:
    want = _TYPES[str(_FIELDS[key])]
    where = f"{source}: key '{key}'"
    if want is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
    elif want is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
    elif want is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    elif want is str:
        if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
            value = value.isoformat()  # YAML reads an unquoted 2015-01-01 as a date
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
    rule = _RULES.get(key)
    if rule is not None:
        if isinstance(rule[0], str):
            if value not in rule:
                raise ConfigError(f"{where}: {value!r} is not one of {', '.join(rule)}")
        elif not (rule[0] <= value <= rule[1]):
            raise ConfigError(f"{where}: {value!r} is outside [{rule[0]}, {rule[1]}]")
    return value


def _perp(symbol: str) -> str:
    return f"{symbol}_PERP"


def _build(raw: dict[str, Any], source: str) -> Settings:
    """Check every key of ``raw``; all problems are reported at once, one per line."""
    values = {}
    errors = []
    for key, value in raw.items():
        if key not in _FIELDS:
            errors.append(f"{source}: unknown key '{key}'")
            continue
        try:
            values[key] = _check_value(key, value, source)
        except ConfigError as exc:
            errors.append(str(exc))
    if errors:
        raise ConfigError("\n".join(errors))
    if "symbol" in values and "instrument" not in values:
        values["instrument"] = _perp(values["symbol"])  # the name follows the symbol unless given
    settings = Settings(**values)
    # spec 10 keys the engine has one way to honour: any other value is refused, not ignored
    if not settings.fill_on_next_quote:
        errors.append(f"{source}: key 'fill_on_next_quote': only true is supported (market orders fill on "
                      "the first quote after the decision, SPEC_NOTES 'Fills')")
    if settings.instrument not in (settings.symbol, _perp(settings.symbol)):
        errors.append(f"{source}: key 'instrument': {settings.instrument!r} does not match symbol "
                      f"{settings.symbol!r} (only the linear perpetual {_perp(settings.symbol)!r} is traded)")
    if plausible_from_ms(settings.plausible_from) is None:
        errors.append(f"{source}: key 'plausible_from': {settings.plausible_from!r} is not a date YYYY-MM-DD (UTC)")
    if not (settings.ws_url in ("mainnet", "testnet") or settings.ws_url.startswith(("ws://", "wss://"))):
        errors.append(f"{source}: key 'ws_url': {settings.ws_url!r} is not mainnet, testnet or a ws:// or "
                      "wss:// URL")
    for key in ("archive_trades_url", "archive_book_url"):
        if not getattr(settings, key).startswith(("http://", "https://")):
            errors.append(f"{source}: key '{key}': {getattr(settings, key)!r} is not an http:// or https:// URL")
    for key in ("shape_long", "shape_short"):
        text = getattr(settings, key)
        bad = [name for name in text.split("/") if name not in _SHAPES]
        if text != "any" and bad:
            errors.append(f"{source}: key '{key}': {bad[0]!r} is not a shape (any, or some of "
                          f"{', '.join(_SHAPES)} joined by '/', e.g. b/D)")
    ratio = settings.order_qty / settings.qty_step
    if abs(ratio - round(ratio)) > 1e-6:
        errors.append(f"{source}: key 'order_qty': {settings.order_qty} is not a multiple of qty_step "
                      f"{settings.qty_step}")
    if errors:
        raise ConfigError("\n".join(errors))
    return settings


def plausible_from_ms(text: str) -> int | None:
    """``plausible_from`` (``YYYY-MM-DD``, UTC) as ms since the epoch, or None if it is not such a date."""
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text.strip())
    if m is None:
        return None
    year, month, day = (int(g) for g in m.groups())
    if not (1970 <= year and 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    return calendar.timegm((year, month, day, 0, 0, 0, 0, 0, 0)) * 1000


def plausible_range_ms(settings: Settings, now_ms: int) -> tuple[int, int]:
    """The exchange times an imported tick may carry: ``[plausible_from, now + plausible_until_days]``, ms.

    Anything outside is a bad row: a 1970 or 2200 stamp, or a value in
    another unit, would otherwise make every command build a minute bar
    for each minute of the span it opens.
    """
    lo = plausible_from_ms(settings.plausible_from)
    assert lo is not None  # checked when the settings were built
    return lo, now_ms + int(settings.plausible_until_days * 86_400_000)


class _Loader(yaml.SafeLoader):
    """YAML for settings: ordinary numbers, true/false only, no duplicate keys.

    PyYAML follows YAML 1.1, which reads ``1e-4`` as a string (its floats
    need a dot) but ``0x10``, ``0o7`` and ``1:30`` as numbers and ``yes``,
    ``on``, ``n`` as booleans. A setting is a plain decimal number or
    true/false; anything else stays a string and the type check names it.
    """


# the resolvers of scalars that are not strings, replaced (not extended): keep null and the rest
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9][0-9_]*$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."))


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key '{key}' is given twice (lines {seen[key]} and {line})", key_node.start_mark)
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def parse_value(text: str) -> Any:
    """A setting's value from text (an environment variable, a grid item): the file's rules."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def load_settings(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Load settings from ``path`` (defaults when None) plus environment overrides.

    Args:
        path: a YAML file; missing keys take their defaults.
        env: the environment to read ``PBDTUI_*`` overrides from (os.environ when None).

    Raises:
        ConfigError: naming the file and key of the first problem found.
    """
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read config: {exc.strerror}") from exc
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b"\n") + 1
            raise ConfigError(f"{source}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from exc
        try:
            loaded = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: expected a mapping of keys to values at the top level")
        raw.update(loaded)
    settings = _build(raw, source)
    env = os.environ if env is None else env
    overrides = {}
    errors = []
    for name, text in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):].lower()
        # environment variables are upper case: PBDTUI_alpha_bin is a typo, not an override
        if key not in _FIELDS or name != ENV_PREFIX + key.upper():
            errors.append(f"environment: {name} is not a setting (settings are {ENV_PREFIX}<KEY> in upper case, "
                          "e.g. PBDTUI_ALPHA_BIN)")
            continue
        try:
            overrides[key] = parse_value(text)
        except yaml.YAMLError as exc:
            errors.append(f"environment: key '{key}' (from {name}): not a value: {' '.join(str(exc).split())}")
    if errors:
        raise ConfigError("\n".join(errors))
    if overrides:
        settings = settings._replace(overrides, f"{source} + environment")
    return settings

