-- Aggregating views over the deduplicated facts. Plain (not materialised) views on purpose:
-- a materialised view fires on every insert, so a replayed batch would be counted twice in a
-- SummingMergeTree; reading FINAL/argMax keeps replays exact and runs identically on chdb and
-- a server. Ordering keys make these scans cheap at analytics volumes.
-- A bet is (account_id, bet_id): bet ids are scoped to their account. Money is summed per
-- currency, never across currencies.

-- One row per bet: its decision, market (accumulators are 'accumulator') and latest settlement.
CREATE OR REPLACE VIEW {db}.v_bets AS
SELECT
    d.bet_id                  AS bet_id,
    d.account_id              AS account_id,
    d.accepted                AS accepted,
    d.stake_minor             AS stake_minor,
    d.potential_return_minor  AS potential_return_minor,
    d.currency                AS currency,
    d.decided_at              AS decided_at,
    if(m.bet_id = '', 'unknown', m.bet_market_type) AS market_type,
    s.bet_id != ''            AS settled,
    s.last_revision           AS revision,
    s.last_return_minor       AS return_minor,
    s.last_settled_at         AS settled_at
FROM (SELECT * FROM {db}.bet_decisions FINAL) AS d
LEFT JOIN (
    SELECT account_id, bet_id,
           if(max(leg_count) > 1, 'accumulator', any(market_type)) AS bet_market_type
    FROM {db}.bet_legs FINAL GROUP BY account_id, bet_id
) AS m ON m.account_id = d.account_id AND m.bet_id = d.bet_id
LEFT JOIN (
    -- aliases differ from the column names: ClickHouse resolves an alias before a column
    SELECT account_id, bet_id, max(revision) AS last_revision,
           argMax(return_minor, revision) AS last_return_minor,
           argMax(settled_at, revision) AS last_settled_at
    FROM {db}.settlements FINAL GROUP BY account_id, bet_id
) AS s ON s.account_id = d.account_id AND s.bet_id = d.bet_id;

-- Turnover, payouts, GGR and margin by market type, currency and hour (of the decision).
CREATE OR REPLACE VIEW {db}.v_hourly_by_market_type AS
SELECT
    toStartOfHour(decided_at)                     AS hour,
    market_type,
    currency,
    countIf(accepted)                             AS bets,
    sumIf(stake_minor, accepted)                  AS turnover_minor,
    sumIf(stake_minor, accepted AND settled)      AS settled_stake_minor,
    sumIf(return_minor, accepted AND settled)     AS payouts_minor,
    settled_stake_minor - payouts_minor           AS ggr_minor
FROM {db}.v_bets
GROUP BY hour, market_type, currency;

-- Open liability by market and currency: for accepted, unsettled bets, what the book loses if
-- they win. An accumulator's liability is counted against each of its legs' markets (conservative).
CREATE OR REPLACE VIEW {db}.v_open_liability_by_market AS
SELECT
    l.market_id                                       AS market_id,
    b.currency                                        AS currency,
    any(l.market_type)                                AS market_type,
    count()                                           AS open_bets,
    sum(b.stake_minor)                                AS open_stake_minor,
    sum(b.potential_return_minor - b.stake_minor)     AS liability_minor
FROM {db}.v_bets AS b
INNER JOIN (SELECT account_id, bet_id, market_id, market_type FROM {db}.bet_legs FINAL) AS l
    ON l.account_id = b.account_id AND l.bet_id = b.bet_id
WHERE b.accepted AND NOT b.settled
GROUP BY l.market_id, b.currency;
