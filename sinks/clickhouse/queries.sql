-- Money is per currency: every query groups by it and never adds two currencies together.

-- name: ggr_by_market_type
SELECT market_type,
       currency,
       sum(bets) AS bets,
       sum(turnover_minor) AS turnover_minor,
       sum(settled_stake_minor) AS settled_stake_minor,
       sum(payouts_minor) AS payouts_minor,
       sum(ggr_minor) AS ggr_minor,
       -- ClickHouse resolves aliases first: these names are the sums above
       round(100 * ggr_minor / nullIf(settled_stake_minor, 0), 2) AS margin_pct
FROM {db}.v_hourly_by_market_type
GROUP BY market_type, currency
ORDER BY currency, ggr_minor DESC, market_type;

-- name: hold_by_hour
SELECT hour,
       currency,
       sum(turnover_minor) AS turnover_minor,
       sum(settled_stake_minor) AS settled_stake_minor,
       sum(payouts_minor) AS payouts_minor,
       sum(ggr_minor) AS ggr_minor,
       round(100 * ggr_minor / nullIf(settled_stake_minor, 0), 2) AS hold_pct
FROM {db}.v_hourly_by_market_type
GROUP BY hour, currency
ORDER BY hour, currency;

-- name: top_liabilities
SELECT market_id, currency, market_type, open_bets, open_stake_minor, liability_minor
FROM {db}.v_open_liability_by_market
ORDER BY liability_minor DESC, market_id, currency
LIMIT 20;

-- name: price_movement
SELECT priced_ts, version, selection, status, provider_odds, odds, overround
FROM {db}.price_history FINAL
WHERE market_id = {market_id:String}
ORDER BY version, selection;
