-- Queries a finance team expects: balances (now and at a point in time), the trial balance,
-- a bet's money trail, and reconciliation of the engine's wallets against the ledger.

CREATE VIEW account_balances AS
SELECT p.account, a.kind, p.currency,
       sum(p.amount_minor)::bigint AS balance_minor,
       count(*) AS postings,
       max(p.created_at) AS last_posting_at
  FROM postings p JOIN accounts a USING (account)
 GROUP BY p.account, a.kind, p.currency;

-- Every account's balance; per currency the balances sum to zero in a balanced ledger.
CREATE VIEW trial_balance AS
SELECT account, kind, currency, balance_minor,
       CASE WHEN balance_minor > 0 THEN balance_minor ELSE 0 END AS debit_minor,
       CASE WHEN balance_minor < 0 THEN -balance_minor ELSE 0 END AS credit_minor
  FROM account_balances;

CREATE VIEW trial_balance_totals AS
SELECT currency,
       sum(balance_minor)::bigint AS total_minor,
       sum(CASE WHEN balance_minor > 0 THEN balance_minor ELSE 0 END)::bigint AS debit_minor,
       sum(CASE WHEN balance_minor < 0 THEN -balance_minor ELSE 0 END)::bigint AS credit_minor,
       count(*) AS accounts
  FROM account_balances
 GROUP BY currency;

CREATE FUNCTION account_balance_at(p_account text, p_at timestamptz DEFAULT now())
RETURNS TABLE (currency text, balance_minor bigint, postings bigint)
LANGUAGE sql STABLE AS $$
    SELECT p.currency, coalesce(sum(p.amount_minor), 0)::bigint, count(*)
      FROM postings p
     WHERE p.account = p_account AND p.created_at <= p_at
     GROUP BY p.currency
$$;

CREATE VIEW bet_money_trail AS
SELECT t.bet_id, t.created_at, t.tx_id, t.kind, p.posting_id, p.account, p.amount_minor, p.currency
  FROM transactions t JOIN postings p USING (tx_id)
 WHERE t.bet_id IS NOT NULL;

CREATE FUNCTION bet_money_trail(p_bet_id text)
RETURNS TABLE (created_at timestamptz, tx_id text, kind text, posting_id text, account text,
               amount_minor bigint, currency text)
LANGUAGE sql STABLE AS $$
    SELECT created_at, tx_id, kind, posting_id, account, amount_minor, currency
      FROM bet_money_trail WHERE bet_id = p_bet_id
     ORDER BY created_at, tx_id, posting_id
$$;

-- p_wallets: {"player:a1:available": 1000, ...} (minor units, the engine's view).
-- Returns only the accounts where the engine and the ledger disagree.
CREATE FUNCTION reconcile_wallets(p_wallets jsonb)
RETURNS TABLE (account text, engine_minor bigint, ledger_minor bigint, diff_minor bigint)
LANGUAGE sql STABLE AS $$
    WITH engine AS (
        SELECT key AS account, (value #>> '{}')::bigint AS engine_minor
          FROM jsonb_each(p_wallets)
    ), ledger AS (
        SELECT p.account, sum(p.amount_minor)::bigint AS ledger_minor
          FROM postings p JOIN engine e ON e.account = p.account
         GROUP BY p.account
    )
    SELECT e.account, e.engine_minor, coalesce(l.ledger_minor, 0),
           e.engine_minor - coalesce(l.ledger_minor, 0)
      FROM engine e LEFT JOIN ledger l USING (account)
     WHERE e.engine_minor <> coalesce(l.ledger_minor, 0)
     ORDER BY e.account
$$;
