"""Loopback venues: exchanges on 127.0.0.1 for tests, demos and offline use.

``loopback.bybit_ws.BybitPublicVenue`` speaks Bybit v5's public WebSocket
(subscribe acks, pongs, ``publicTrade``, ``orderbook.1``, ``tickers``) from a
store's ticks or a simulated session, at a chosen speed, with injectable
faults (``loopback.faults``). ``pbdtui exchange-sim`` runs it.
``loopback.bybit_rest.BybitRestVenue`` is its REST counterpart: one linear
account behind Bybit v5's signed REST endpoints (orders, positions,
executions, exchange stops on the current quote, injectable failures);
``loopback.bybit_rest.serve(...)`` starts one.

A package of its own: the engine and the live runtime never import it
(import-linter contract), so nothing of it can leak into a live run.
"""
