-- Debt positions issued ahead (posizioni debitorie). The position itself is kept as JSON;
-- the columns are what listings filter on. Options are rows so a notice number is unique
-- per creditor and found by its number, and reminders find what falls due.
CREATE TABLE debt_positions (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    creditor_id TEXT NOT NULL,
    module TEXT NOT NULL,
    position_key TEXT NOT NULL,
    payer TEXT NOT NULL,
    payment_type_id TEXT NOT NULL,
    status TEXT NOT NULL,
    valid_until TEXT,
    version BIGINT NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (creditor_id, module, position_key)
);
CREATE INDEX debt_positions_creditor ON debt_positions (creditor_id, id);
CREATE INDEX debt_positions_payer ON debt_positions (creditor_id, payer, id);
CREATE INDEX debt_positions_valid_until ON debt_positions (valid_until, id);

CREATE TABLE position_options (
    position_id TEXT COLLATE "C" NOT NULL,
    idx INTEGER NOT NULL,
    creditor_id TEXT NOT NULL,
    notice_number TEXT NOT NULL,
    due_date TEXT NOT NULL,
    paid INTEGER NOT NULL,
    PRIMARY KEY (position_id, idx),
    UNIQUE (creditor_id, notice_number)
);
CREATE INDEX position_options_due ON position_options (due_date, position_id);

-- Every source an option's item ever had (it changes with the position's revision), so a
-- late payment of an old item still finds its option.
CREATE TABLE position_sources (
    creditor_id TEXT NOT NULL,
    module TEXT NOT NULL,
    source_key TEXT NOT NULL,
    position_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (creditor_id, module, source_key)
);

CREATE TABLE position_events (
    position_id TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (position_id, seq)
);

-- Keys of messages enqueued once (reminders).
CREATE TABLE outbox_keys (
    message_key TEXT PRIMARY KEY NOT NULL,
    outbox_id TEXT NOT NULL
);
