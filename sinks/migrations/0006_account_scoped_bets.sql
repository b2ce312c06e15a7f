-- Bet ids are scoped to their account (issue 10, item 6): two accounts may both place a bet
-- "b1" and the engine keeps them apart (its tables key a bet by "{account}|{bet_id}", ledger
-- transaction ids carry the account). Decisions and settlements still carry the plain bet_id
-- beside account_id, so the projection's key becomes (account_id, bet_id): before, the second
-- account's bet overwrote or was merged into the first's.
--
-- Existing rows are kept as they are: bet_id was unique on its own, so it is unique together with
-- account_id too. Only keys and indexes change. ALTER TABLE fires no row trigger, so the
-- append-only triggers on bet_settlements (0001) are not in the way; the per-statement ledger
-- checks of 0003/0004 are on postings, which this does not touch; and no view of 0002 depends
-- on a key (the views that join on bet_id are redefined below).
--
-- Wallets are per (account, currency) and a ledger account may hold postings in several
-- currencies: every figure below is per currency, never a sum across currencies.

ALTER TABLE bets DROP CONSTRAINT bets_pkey;
ALTER TABLE bets ADD CONSTRAINT bets_pkey PRIMARY KEY (account_id, bet_id);
DROP INDEX bets_account;  -- the key's leading column serves lookups by account

ALTER TABLE bet_settlements DROP CONSTRAINT bet_settlements_pkey;
ALTER TABLE bet_settlements ADD CONSTRAINT bet_settlements_pkey
    PRIMARY KEY (account_id, bet_id, revision);

-- a bet's money trail is looked up by (bet_id, account_id); bet_id leading still serves bet_id alone
DROP INDEX transactions_bet_id;
CREATE INDEX transactions_bet ON transactions (bet_id, account_id) WHERE bet_id IS NOT NULL;

COMMENT ON COLUMN accounts.currency IS
    'currency of the first posting the sink saw for the account; an account may hold postings in'
    ' several currencies, and every balance is per (account, currency)';

-- the account a bet belongs to, appended (CREATE OR REPLACE VIEW may only add columns at the end)
CREATE OR REPLACE VIEW bet_money_trail AS
SELECT t.bet_id, t.created_at, t.tx_id, t.kind, p.posting_id, p.account, p.amount_minor, p.currency,
       t.account_id
  FROM transactions t JOIN postings p USING (tx_id)
 WHERE t.bet_id IS NOT NULL;

-- One account's bet: the answer never carries another account's money.
CREATE FUNCTION bet_money_trail(p_account_id text, p_bet_id text)
RETURNS TABLE (created_at timestamptz, tx_id text, kind text, posting_id text, account text,
               amount_minor bigint, currency text)
LANGUAGE sql STABLE AS $$
    SELECT created_at, tx_id, kind, posting_id, account, amount_minor, currency
      FROM bet_money_trail WHERE bet_id = p_bet_id AND account_id = p_account_id
     ORDER BY created_at, tx_id, posting_id
$$;

-- By bet id alone (0002's signature): refused when several accounts hold that bet id, rather
-- than mixing their money in one answer.
CREATE OR REPLACE FUNCTION bet_money_trail(p_bet_id text)
RETURNS TABLE (created_at timestamptz, tx_id text, kind text, posting_id text, account text,
               amount_minor bigint, currency text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    owners text;
BEGIN
    SELECT string_agg(DISTINCT coalesce(t.account_id, '?'), ', ') INTO owners
      FROM transactions t WHERE t.bet_id = p_bet_id
    HAVING count(DISTINCT coalesce(t.account_id, '?')) > 1;
    IF owners IS NOT NULL THEN
        RAISE EXCEPTION 'bet id % belongs to several accounts (%): name the account', p_bet_id, owners
            USING ERRCODE = 'cardinality_violation';
    END IF;
    RETURN QUERY
    SELECT v.created_at, v.tx_id, v.kind, v.posting_id, v.account, v.amount_minor, v.currency
      FROM bet_money_trail v WHERE v.bet_id = p_bet_id
     ORDER BY v.created_at, v.tx_id, v.posting_id;
END $$;

-- The book's gross gaming revenue, per currency (the balance of book:ggr in each).
CREATE VIEW ggr_by_currency AS
SELECT currency, sum(amount_minor)::bigint AS ggr_minor, count(*) AS postings
  FROM postings
 WHERE account = 'book:ggr'
 GROUP BY currency;

-- p_wallets: {"player:a1:available": {"GBP": 1000, "JPY": 50}, ...}: the engine's wallets, one
-- per (account, currency), in minor units. Returns the (account, currency) pairs where the engine
-- and the ledger disagree. For every account named, every currency either side knows is compared,
-- so a currency the engine lost (or never had) shows up too.
CREATE FUNCTION reconcile_wallets_by_currency(p_wallets jsonb)
RETURNS TABLE (account text, currency text, engine_minor bigint, ledger_minor bigint,
               diff_minor bigint)
LANGUAGE sql STABLE AS $$
    WITH engine AS (
        SELECT a.key AS account, c.key AS currency, (c.value #>> '{}')::bigint AS engine_minor
          FROM jsonb_each(p_wallets) a, jsonb_each(a.value) c
    ), ledger AS (
        SELECT p.account, p.currency, sum(p.amount_minor)::bigint AS ledger_minor
          FROM postings p
         WHERE p.account IN (SELECT jsonb_object_keys(p_wallets))
         GROUP BY p.account, p.currency
    )
    SELECT account, currency, coalesce(e.engine_minor, 0), coalesce(l.ledger_minor, 0),
           coalesce(e.engine_minor, 0) - coalesce(l.ledger_minor, 0)
      FROM engine e FULL JOIN ledger l USING (account, currency)
     WHERE coalesce(e.engine_minor, 0) <> coalesce(l.ledger_minor, 0)
     ORDER BY account, currency
$$;

-- 0002's one-number-per-account form still works for accounts that hold one currency; for an
-- account with postings in several it refuses (a single number cannot be compared with amounts
-- in different currencies) instead of adding them together.
CREATE OR REPLACE FUNCTION reconcile_wallets(p_wallets jsonb)
RETURNS TABLE (account text, engine_minor bigint, ledger_minor bigint, diff_minor bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    mixed record;
BEGIN
    SELECT p.account, string_agg(DISTINCT p.currency, ', ') AS currencies INTO mixed
      FROM postings p
     WHERE p.account IN (SELECT jsonb_object_keys(p_wallets))
     GROUP BY p.account
    HAVING count(DISTINCT p.currency) > 1
     ORDER BY p.account
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'account % holds postings in several currencies (%): reconcile it per currency',
            mixed.account, mixed.currencies
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    WITH engine AS (
        SELECT key AS account, (value #>> '{}')::bigint AS engine_minor
          FROM jsonb_each(p_wallets)
    ), ledger AS (
        SELECT p.account, sum(p.amount_minor)::bigint AS ledger_minor
          FROM postings p JOIN engine e ON e.account = p.account
         GROUP BY p.account
    )
    SELECT e.account, e.engine_minor, coalesce(l.ledger_minor, 0)::bigint,
           (e.engine_minor - coalesce(l.ledger_minor, 0))::bigint
      FROM engine e LEFT JOIN ledger l USING (account)
     WHERE e.engine_minor <> coalesce(l.ledger_minor, 0)
     ORDER BY e.account;
END $$;
