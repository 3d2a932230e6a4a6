"""Execution: intents out of the engine, fills back in (ARCHITECTURE.md).

The signal kernel decides and emits intents; an execution backend turns
them into fills (the paper fill model inline in the numba loop, or the
Bybit backend through pybit with the stop held on the exchange); fills and
reconciliation reports come back through one door, the position function,
which is the only writer of position and PnL.

``engine.execution.types`` holds the plain records every backend speaks;
``engine.execution.bybit`` is the Bybit backend (``BybitExecution``).
"""
