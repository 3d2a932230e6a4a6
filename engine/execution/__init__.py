"""Execution: intents out of the engine, fills back in (ARCHITECTURE.md).

The signal kernel decides and emits intents (``engine.types.INTENT_DTYPE``,
``StepOutput.intents``; ``Engine.intents_of`` gives ``types.Intent`` with a
client order id unique across restarts). An execution backend turns them
into fills: the paper fill model inline in the numba loop
(``engine.kernels.paper``, engine mode "paper"), or an exchange backend
(engine mode "external": the loop only publishes intents). Fills and
reconciliation reports come back through one door, the position function
``engine.kernels.position.apply_fill``, the only writer of position (signed
lots) and PnL:

- ``Engine.apply_fill(Fill)``: an exchange execution, applied once per
  ``exec_id``; partial fills leave a smaller position (its stop and target
  still apply); when an intent's fills reach its quantity it is done.
- ``Engine.order_ended(client_id)``: the backend's word that an order is
  over without (complete) fills: rejected, cancelled, expired.
- ``Engine.apply_funding(ts, amount)``: funding the exchange charged.
- ``Engine.reconcile(PositionReport, adopt=False)``: a mismatch blocks new
  entries (reason RECONCILE_MISMATCH) and returns an alert; ``adopt`` also
  enters an adjusting fill flagged EXIT_RECONCILE. Never an overwrite.

In external mode the engine also turns a crossed stop or target into one
exit intent (reduce-only; the exchange's own stop, sent with the entry, is
the primary protection).

``engine.execution.types`` holds the plain records every backend speaks;
``engine.execution.bybit`` is the Bybit backend (``BybitExecution``).
"""
