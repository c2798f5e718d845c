-- The payments schema. Money is integer cents, times are microseconds since the Unix epoch
-- (UTC), ids are UUID text (v7, so ordering by id orders by creation).

CREATE TABLE creditors (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    data TEXT NOT NULL
);

CREATE TABLE payment_types (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    creditor_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX payment_types_creditor ON payment_types (creditor_id, id);

CREATE TABLE methods (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    creditor_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX methods_creditor ON methods (creditor_id, id);

CREATE TABLE carts (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    creditor_id TEXT NOT NULL,
    payer_id TEXT NOT NULL,
    payer TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (creditor_id, payer_id)
);

CREATE TABLE items (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    creditor_id TEXT NOT NULL,
    cart_id TEXT NOT NULL,
    payer_id TEXT NOT NULL,
    module TEXT NOT NULL,
    source_key TEXT NOT NULL,
    payment_type_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    amount_cents BIGINT NOT NULL CHECK (amount_cents >= 0),
    currency TEXT NOT NULL,
    due_date TEXT,
    extra TEXT NOT NULL,
    state TEXT NOT NULL,
    transaction_id TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (creditor_id, module, source_key)
);
CREATE INDEX items_cart ON items (cart_id, id);

CREATE TABLE transactions (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    creditor_id TEXT NOT NULL,
    cart_id TEXT NOT NULL,
    payer_id TEXT NOT NULL,
    payer TEXT NOT NULL,
    method_id TEXT NOT NULL,
    method_kind TEXT NOT NULL,
    gateway_id TEXT NOT NULL,
    lines TEXT NOT NULL,
    total_cents BIGINT NOT NULL CHECK (total_cents >= 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    provider_ref TEXT,
    idempotency_key TEXT NOT NULL,
    instruction TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    UNIQUE (payer_id, idempotency_key)
);
CREATE INDEX transactions_creditor ON transactions (creditor_id, id);
CREATE INDEX transactions_creditor_created ON transactions (creditor_id, created_at);
CREATE INDEX transactions_creditor_status ON transactions (creditor_id, status, id);
CREATE INDEX transactions_creditor_method ON transactions (creditor_id, method_kind, id);
CREATE INDEX transactions_creditor_payer ON transactions (creditor_id, payer_id, id);
CREATE INDEX transactions_creditor_total ON transactions (creditor_id, total_cents);
-- The operator's usual search, state and method within a period: pages walk the first
-- (newest first, no sort), counts and totals read the second alone.
CREATE INDEX transactions_search_page ON transactions (creditor_id, status, method_kind, id, created_at, total_cents);
CREATE INDEX transactions_search_count ON transactions (creditor_id, status, method_kind, created_at, total_cents);
CREATE INDEX transactions_payer ON transactions (payer_id, id);
CREATE INDEX transactions_provider_ref ON transactions (gateway_id, provider_ref);
CREATE INDEX transactions_expiry ON transactions (status, expires_at);

-- One row per item of a transaction, for the filters on type and module and for exports.
CREATE TABLE transaction_lines (
    transaction_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    module TEXT NOT NULL,
    source_key TEXT NOT NULL,
    payment_type_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    PRIMARY KEY (transaction_id, position)
);
CREATE INDEX transaction_lines_module ON transaction_lines (module, transaction_id);
CREATE INDEX transaction_lines_type ON transaction_lines (payment_type_id, transaction_id);

CREATE TABLE transaction_events (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    transaction_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    provider_ref TEXT,
    note TEXT
);
CREATE INDEX transaction_events_transaction ON transaction_events (transaction_id, id);

CREATE TABLE outbox (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    transaction_id TEXT NOT NULL,
    creditor_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at, id);
CREATE INDEX outbox_creditor ON outbox (creditor_id, id);
CREATE INDEX outbox_transaction ON outbox (transaction_id, id);
