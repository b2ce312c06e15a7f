-- The double-entry ledger: the source of truth an auditor reads.
-- Money is BIGINT minor units with an ISO currency; postings are append-only (corrections are
-- new postings) and every transaction's postings sum to zero per currency, checked at commit.

CREATE TABLE accounts (
    account     text PRIMARY KEY,
    -- 'player' | 'book' | 'cash' ...: the first segment of the engine's account name
    kind        text GENERATED ALWAYS AS (split_part(account, ':', 1)) STORED,
    currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE transactions (
    tx_id        text PRIMARY KEY,
    kind         text NOT NULL,
    bet_id       text,
    account_id   text,
    created_at   timestamptz NOT NULL,
    -- where the row came from, so an auditor can find the Kafka record
    src_topic     text,
    src_partition integer,
    src_offset    bigint,
    inserted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transactions_bet_id ON transactions (bet_id) WHERE bet_id IS NOT NULL;

CREATE TABLE postings (
    posting_id   text PRIMARY KEY,
    tx_id        text NOT NULL REFERENCES transactions (tx_id),
    account      text NOT NULL REFERENCES accounts (account),
    amount_minor bigint NOT NULL,
    currency     text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- the transaction's business time, copied so balance-at-time needs no join
    created_at   timestamptz NOT NULL
);
CREATE INDEX postings_tx_id ON postings (tx_id);
CREATE INDEX postings_account_time ON postings (account, created_at);

-- Append-only: corrections are new postings, never edits.
CREATE FUNCTION ledger_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger table % is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE ON transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change();

-- Balanced transactions, checked at COMMIT (deferred) so a transaction's postings can be
-- inserted one by one or in any order within the database transaction.
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT currency, sum(amount_minor) AS total INTO bad
      FROM postings WHERE tx_id = NEW.tx_id
     GROUP BY currency HAVING sum(amount_minor) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % is unbalanced: postings in % sum to %',
            NEW.tx_id, bad.currency, bad.total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER postings_balanced AFTER INSERT ON postings
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

-- Bets: a mutable projection of the lifecycle (decision, then settlement revisions).
CREATE TABLE bets (
    bet_id                  text PRIMARY KEY,
    account_id              text NOT NULL,
    accepted                boolean,
    reject_reason           text,
    stake_minor             bigint CHECK (stake_minor >= 0),
    potential_return_minor  bigint CHECK (potential_return_minor >= 0),
    currency                text CHECK (currency ~ '^[A-Z]{3}$'),
    bound_odds              numeric(12, 4)[],
    requested_at            timestamptz,
    decided_at              timestamptz,
    outcome                 text,
    return_minor            bigint CHECK (return_minor >= 0),
    settlement_revision     integer,
    settled_at              timestamptz,
    -- derived, so it can never disagree with the facts it summarises
    state text GENERATED ALWAYS AS (
        CASE
            WHEN settlement_revision > 0 THEN 'resettled'
            WHEN settlement_revision = 0 THEN 'settled'
            WHEN accepted THEN 'accepted'
            WHEN NOT accepted THEN 'rejected'
            ELSE 'pending'
        END) STORED,
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bets_account ON bets (account_id);
CREATE INDEX bets_state ON bets (state);

-- Every settlement revision as received (history; append-only).
CREATE TABLE bet_settlements (
    bet_id                 text NOT NULL,
    revision               integer NOT NULL,
    account_id             text NOT NULL,
    outcome                text NOT NULL,
    stake_minor            bigint NOT NULL,
    return_minor           bigint NOT NULL CHECK (return_minor >= 0),
    previous_return_minor  bigint NOT NULL,
    currency               text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    settled_at             timestamptz NOT NULL,
    PRIMARY KEY (bet_id, revision)
);
CREATE TRIGGER bet_settlements_append_only BEFORE UPDATE OR DELETE ON bet_settlements
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();

-- Kafka positions, written in the same database transaction as the rows they produced:
-- this table, not Kafka's committed offsets, is where the sink resumes.
CREATE TABLE consumed_offsets (
    consumer_group text NOT NULL,
    topic          text NOT NULL,
    partition      integer NOT NULL,
    next_offset    bigint NOT NULL CHECK (next_offset >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

-- Messages the database refused (a constraint violation in one record): kept, not dropped,
-- so the sink can move on and a human can look.
CREATE TABLE sink_rejects (
    topic       text NOT NULL,
    partition   integer NOT NULL,
    "offset"    bigint NOT NULL,
    error       text NOT NULL,
    value       bytea,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
