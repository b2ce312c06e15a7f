-- The balance rule of 0001, still enforced at COMMIT, now computed once per INSERT statement
-- (set-based, from the statement's transition table) instead of once per posting row.
--
-- 0001's deferred constraint trigger queued one check per inserted posting, each summing all the
-- postings of that row's transaction again: a 5,000-transaction batch ran 10,000 such queries at
-- COMMIT, the largest single cost of writing it.
--
-- What is checked: the postings a database transaction adds to a ledger transaction must sum
-- to zero per currency. Postings can never be updated or deleted (0001), and every database
-- transaction that ever added postings was held to this same rule, so a ledger transaction's
-- committed postings always sum to zero; whatever a database transaction adds on top must then
-- sum to zero too, and that is exactly what is checked. So the guarantee is unchanged: every
-- ledger transaction is balanced per currency in every committed state, postings may still be
-- inserted one by one or in any order within the database transaction, and an unbalanced one
-- fails the COMMIT with check_violation and the same message.
--
-- How: an AFTER INSERT ... FOR EACH STATEMENT trigger sums the statement's new postings per
-- (transaction, currency). Sums that are zero need nothing more: a batch that inserts whole,
-- balanced transactions (the sink) leaves nothing to check at COMMIT. Non-zero partial sums
-- (postings inserted in several statements) are parked in ledger_unbalanced, where a deferred
-- constraint trigger adds them up at COMMIT (SET CONSTRAINTS ... IMMEDIATE: at the end of the
-- statement) and refuses the COMMIT unless they cancel out.

DROP TRIGGER postings_balanced ON postings;
DROP FUNCTION ledger_check_balanced();

-- Rows live only inside the database transaction that inserted them (the deferred check deletes
-- them at COMMIT; a rollback discards them), so the table is empty between transactions and
-- nothing in it ever needs to survive a crash: UNLOGGED.
CREATE UNLOGGED TABLE ledger_unbalanced (
    tx_id        text NOT NULL,
    currency     text NOT NULL,
    amount_minor numeric NOT NULL
);
CREATE INDEX ledger_unbalanced_tx ON ledger_unbalanced (tx_id, currency);

CREATE FUNCTION ledger_sum_new_postings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_unbalanced (tx_id, currency, amount_minor)
    SELECT tx_id, currency, sum(amount_minor)
      FROM new_postings
     GROUP BY tx_id, currency
    HAVING sum(amount_minor) <> 0;
    RETURN NULL;
END $$;

-- fires for INSERT and COPY alike; rows skipped by ON CONFLICT DO NOTHING are not in new_postings
CREATE TRIGGER postings_balanced AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_sum_new_postings();

CREATE FUNCTION ledger_check_unbalanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
BEGIN
    SELECT sum(amount_minor) INTO total
      FROM ledger_unbalanced WHERE tx_id = NEW.tx_id AND currency = NEW.currency;
    IF total <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % is unbalanced: postings in % sum to %',
            NEW.tx_id, NEW.currency, total
            USING ERRCODE = 'check_violation';
    END IF;
    -- settled: the checks queued for this pair's other parked rows find nothing left
    DELETE FROM ledger_unbalanced WHERE tx_id = NEW.tx_id AND currency = NEW.currency;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_unbalanced_check AFTER INSERT ON ledger_unbalanced
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_unbalanced();
