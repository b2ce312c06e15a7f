"""The bet API for apps and partners (``oddsflow api``): placement, reads, live stream.

Design, in one place:

* **Stateless instances** (FastAPI on uvicorn with uvloop), any number behind a load balancer.
  ``oddsflow api [--port N]`` serves; ``oddsflow api token ACCOUNT`` prints a dev token.
* **Auth** (:mod:`.auth`): bearer JWTs, ``sub`` = account id, issuer/audience/algorithms from
  ``ODDSFLOW_API_*`` (:mod:`.settings`); HS256 secret or an RS256/ES256 public key. ``alg: none``
  and algorithms not configured are refused before any key is chosen. ``role: operator`` reads
  any account. Outside ``ODDSFLOW_ENV=dev`` the API will not start with the built-in secret.
* **Placement** (``POST /v1/bets``, :mod:`.app`): the feed's bet rules validate the body
  (:mod:`.validation`, one call site into ``streams.normalise``). bet id =
  ``api-`` + sha256(account|Idempotency-Key)[:24]. The (account, key) row in ``api_placements``
  (migration 0005; primary key = the idempotency record, shared by every instance) holds the
  body's fingerprint: same key + other body -> 422 ``idempotency_key_reused``; same body -> the
  same bet. A retry is answered from what is known (this instance's recent decisions, then the
  read model) or re-produces the identical request, which the engine answers with the original
  decision (its bet id is its idempotency key). The request goes out acks=all with an idempotent
  producer; the API waits up to ``ODDSFLOW_API_DECISION_WAIT_MS`` (or ``Prefer: wait=N``):
  201 accepted, 422 rejected with the engine's reason as ``error.code``, 202 pending + Location.
* **Routing of answers** (:mod:`.bridge`): every instance reads all partitions of the decision
  and settlement topics itself (manual assignment, no group, from the end offsets at start-up)
  and resolves only the placements waiting in its own process; no reply topics.
* **Reads** (CQRS, :mod:`.readmodel`): bets, settlements and wallets from the Postgres tables the
  ``oddsflow sink run postgres`` process projects (``bets``, ``bet_settlements``, ``postings``),
  joined with ``api_placements`` for the pending state. Fixtures and prices from an in-memory
  book replayed from ``markets.priced`` (compacted) and ``feed.fixtures`` (:mod:`.stream`).
* **Stream** (``/v1/stream``, :mod:`.stream`): ``{"op": "subscribe"|"unsubscribe", "events":
  [...]}``, ``{"op": "ping"}``; messages ``subscribed``, ``snapshot`` (per event: fixture and
  every market), ``market`` (each change, with its version), ``decision``, ``settlement`` (the
  account's own; an operator gets all), ``heartbeat``. Bounded queue per connection, market
  updates conflated when the client is behind, closed with 4008 when it still cannot keep up.
* **Protection** (:mod:`.protection`): token buckets per account and per client address (429 +
  Retry-After), an in-flight cap per instance (503 + Retry-After), a body cap (413), strict
  bodies (422 naming the field).
* **Observability** (:mod:`.metrics`): ``oddsflow_api_*`` on ``/metrics``; ``X-Request-ID``
  echoed and logged; ``Server-Timing: engine;dur=`` on placement answers.
"""
