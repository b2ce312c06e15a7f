"""Sportradar Unified Odds Feed (UOF) adapter: XML over AMQP -> the engine's canonical records.

Modules, one concern each:

* :mod:`.parse` - hardened XML parsing (defusedxml) into the frozen message models of
  :mod:`.models`; anything unusable raises :class:`.parse.UofError` with a reason and a code;
* :mod:`.markets` - the market mapping table (Sportradar market id + specifiers + outcome id ->
  the engine's market type, period, line and selection);
* :mod:`.adapter` - messages -> canonical records, with ordering/duplicate rules and producer
  health (:mod:`.health`);
* :mod:`.sink` - records and dead letters to Kafka; :mod:`.consume` (AMQP), :mod:`.replay`
  (recorded files) and :mod:`.http` (``POST /feeds/{provider}/uof``) are the transports;
  :mod:`.cli` the ``oddsflow uof`` commands.

See docs/uof.md for the mapping table and what is (not) supported.
"""
