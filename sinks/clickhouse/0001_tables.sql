-- Raw facts, one table per stream. ReplacingMergeTree keyed by the natural id (the ORDER BY)
-- makes a replay harmless: duplicates collapse at merge time and every query reads FINAL (or
-- argMax), so a restart never double counts. Partitions are months of the record's own time,
-- which never changes for a given id, so duplicates always meet in the same partition.
-- A bet id is scoped to its account (two accounts may both place "b1"), so every bet table is
-- keyed by (account_id, bet_id, ...). A database made before that is re-keyed, keeping its rows,
-- by the sink's own DDL path (clickhouse.py, Schemaed.ensure_schema: REKEYED_TABLES).

CREATE DATABASE IF NOT EXISTS {db};

CREATE TABLE IF NOT EXISTS {db}.bet_legs (
    bet_id         String,
    leg_index      UInt16,
    leg_count      UInt16,
    account_id     String,
    event_id       String,
    market_id      String,
    market_type    LowCardinality(String),
    period         LowCardinality(String),
    line           Nullable(String),
    selection      String,
    requested_odds Decimal(12, 4),
    stake_minor    Int64,
    currency       LowCardinality(String),
    channel        LowCardinality(String),
    placed_at      DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(placed_at)
ORDER BY (account_id, bet_id, leg_index);

CREATE TABLE IF NOT EXISTS {db}.bet_decisions (
    bet_id                 String,
    account_id             String,
    accepted               Bool,
    reason                 Nullable(String),
    bound_odds             Array(Decimal(12, 4)),
    stake_minor            Int64,
    potential_return_minor Int64,
    currency               LowCardinality(String),
    requested_at           DateTime64(3, 'UTC'),
    decided_at             DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(decided_at)
ORDER BY (account_id, bet_id);

CREATE TABLE IF NOT EXISTS {db}.settlements (
    bet_id                String,
    revision              UInt32,
    account_id            String,
    outcome               LowCardinality(String),
    stake_minor           Int64,
    return_minor          Int64,
    previous_return_minor Int64,
    currency              LowCardinality(String),
    settled_at            DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(settled_at)
ORDER BY (account_id, bet_id, revision);

CREATE TABLE IF NOT EXISTS {db}.postings (
    posting_id   String,
    tx_id        String,
    kind         LowCardinality(String),
    bet_id       Nullable(String),
    account_id   Nullable(String),
    account      String,
    amount_minor Int64,
    currency     LowCardinality(String),
    created_at   DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (account, posting_id);

CREATE TABLE IF NOT EXISTS {db}.price_history (
    market_id        String,
    version          UInt64,
    selection        String,
    event_id         String,
    market_type      LowCardinality(String),
    period           LowCardinality(String),
    line             Nullable(String),
    status           LowCardinality(String),
    in_play          Bool,
    provider_odds    Decimal(12, 4),
    fair_probability Decimal(14, 10),
    odds             Decimal(12, 4),
    margin           Decimal(12, 4),
    overround        Decimal(14, 10),
    provider_ts      DateTime64(3, 'UTC'),
    priced_ts        DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(priced_ts)
ORDER BY (market_id, version, selection);

-- The sink's Kafka positions, inserted after each batch. The version column keeps the highest
-- offset; a crash between the batch and this insert only causes a (deduplicated) replay.
CREATE TABLE IF NOT EXISTS {db}.sink_offsets (
    consumer_group String,
    topic          String,
    partition      UInt32,
    next_offset    UInt64,
    written_at     DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(next_offset)
ORDER BY (consumer_group, topic, partition);
