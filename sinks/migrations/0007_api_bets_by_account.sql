-- Bet ids are scoped to their account (0006): a placement matches the sink's bet of the same
-- account only, never another account's bet that happens to share the id.
CREATE OR REPLACE VIEW api_bets AS
SELECT coalesce(b.bet_id, p.bet_id)              AS bet_id,
       coalesce(b.account_id, p.account_id)      AS account_id,
       coalesce(b.state, 'pending')              AS state,
       coalesce(b.stake_minor, (p.request ->> 'stake_minor')::bigint) AS stake_minor,
       coalesce(b.currency, p.request ->> 'currency') AS currency,
       b.accepted, b.reject_reason, b.potential_return_minor, b.bound_odds,
       coalesce(b.requested_at, p.placed_at)     AS requested_at,
       b.decided_at, b.outcome, b.return_minor, b.settlement_revision, b.settled_at
  FROM bets b
  FULL OUTER JOIN api_placements p ON p.account_id = b.account_id AND p.bet_id = b.bet_id;
