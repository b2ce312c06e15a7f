-- postings.tx_id -> transactions and postings.account -> accounts: the same rule as 0001's two
-- foreign keys, now checked once per INSERT statement (set-based, from the statement's
-- transition table) instead of once per posting row.
--
-- A foreign key checks every inserted row with its own query (and row lock) on the referenced
-- table: two such queries per posting were a third of the database's work for a sink batch.
-- What the foreign keys guaranteed, and how it still holds:
--   * a posting names an existing transaction and an existing account: checked below at the
--     end of every INSERT or COPY into postings (the moment a NOT DEFERRABLE foreign key
--     checks), failing the statement with foreign_key_violation under the same constraint names;
--   * a referenced row cannot disappear or change its key: transactions are append-only since
--     0001 (no UPDATE, DELETE or TRUNCATE), and accounts now keep their name for good (no
--     DELETE, no change of the account name, no TRUNCATE; the currency may still be corrected).
--     So no row lock is needed to keep a checked reference valid until COMMIT. (Before, an
--     account that no posting referenced could be deleted; the sink only ever creates accounts
--     for the postings it writes, so that was never a real case.)
-- Postings themselves cannot be updated (0001), so INSERT is the only way a reference appears.

ALTER TABLE postings DROP CONSTRAINT postings_tx_id_fkey;
ALTER TABLE postings DROP CONSTRAINT postings_account_fkey;

CREATE FUNCTION ledger_check_posting_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing text;
BEGIN
    -- LATERAL ... LIMIT 1 keeps the plan an index probe per distinct key, however the tables grow
    SELECT n.tx_id INTO missing
      FROM (SELECT DISTINCT tx_id FROM new_postings) n
      LEFT JOIN LATERAL (
          SELECT true AS found FROM transactions t WHERE t.tx_id = n.tx_id LIMIT 1) x ON true
     WHERE x.found IS NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "postings" violates foreign key constraint "postings_tx_id_fkey"'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'postings',
                  CONSTRAINT = 'postings_tx_id_fkey',
                  DETAIL = format('Key (tx_id)=(%s) is not present in table "transactions".', missing);
    END IF;
    SELECT n.account INTO missing
      FROM (SELECT DISTINCT account FROM new_postings) n
      LEFT JOIN LATERAL (
          SELECT true AS found FROM accounts a WHERE a.account = n.account LIMIT 1) x ON true
     WHERE x.found IS NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "postings" violates foreign key constraint "postings_account_fkey"'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'postings',
                  CONSTRAINT = 'postings_account_fkey',
                  DETAIL = format('Key (account)=(%s) is not present in table "accounts".', missing);
    END IF;
    RETURN NULL;
END $$;

-- fires for INSERT and COPY alike; rows skipped by ON CONFLICT DO NOTHING are not in new_postings
CREATE TRIGGER postings_references AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_check_posting_references();

CREATE FUNCTION ledger_forbid_account_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'accounts are referenced by name from the ledger: % of an account is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER accounts_no_delete BEFORE DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_account_change();
CREATE TRIGGER accounts_keep_name BEFORE UPDATE OF account ON accounts
    FOR EACH ROW WHEN (OLD.account IS DISTINCT FROM NEW.account)
    EXECUTE FUNCTION ledger_forbid_account_change();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_account_change();
