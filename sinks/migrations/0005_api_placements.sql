-- The bet API's placements: one row per (account, Idempotency-Key), written by the API before it
-- produces the request. It is the API's idempotency record (the same key with another body is
-- refused) and the read model's "pending" state until the sink projects the decision into bets.
CREATE TABLE api_placements (
    account_id       text NOT NULL,
    idempotency_key  text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    bet_id           text NOT NULL UNIQUE,
    body_sha256      text NOT NULL,
    request          jsonb NOT NULL,
    placed_at        timestamptz NOT NULL,
    instance_id      text,
    PRIMARY KEY (account_id, idempotency_key)
);
CREATE INDEX api_placements_account_time ON api_placements (account_id, placed_at DESC);

-- A bet as the API reads it: the sink's projection (bets), or a placement not yet decided.
CREATE VIEW api_bets AS
SELECT coalesce(b.bet_id, p.bet_id)              AS bet_id,
       coalesce(b.account_id, p.account_id)      AS account_id,
       coalesce(b.state, 'pending')              AS state,
       coalesce(b.stake_minor, (p.request ->> 'stake_minor')::bigint) AS stake_minor,
       coalesce(b.currency, p.request ->> 'currency') AS currency,
       b.accepted, b.reject_reason, b.potential_return_minor, b.bound_odds,
       coalesce(b.requested_at, p.placed_at)     AS requested_at,
       b.decided_at, b.outcome, b.return_minor, b.settlement_revision, b.settled_at
  FROM bets b
  FULL OUTER JOIN api_placements p ON p.bet_id = b.bet_id;
