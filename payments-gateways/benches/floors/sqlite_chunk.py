"""SQLite's own time for the writes of one import chunk of 1,000 payments, without the library.

Run after `BENCH_STORE=sqlite cargo bench -p payments-gateways --bench camt`, on the file it leaves:

    python3 payments-gateways/benches/floors/sqlite_chunk.py target/tmp/bench/camt.db

Each statement is prepared once and run per row (`executemany`), in one transaction with
`synchronous=FULL` in WAL mode, as a hand-written importer would: 1,000 bank entries, 1,000
transactions' status, their items, 1,000 events and 2,000 outbox rows, then the commit. The
script changes the file (the transactions it flips stay `pending`): rerun the bench before
measuring again. Prints each of 5 chunks and the medians, in ms.
"""
import sqlite3,time,sys,uuid,json
db=sys.argv[1]
c=sqlite3.connect(db, isolation_level=None)
c.execute("pragma journal_mode=wal"); c.execute("pragma synchronous=full")
payload=c.execute("select payload from outbox limit 1").fetchone()[0]
data=c.execute("select data from bank_entries limit 1").fetchone()[0]
cred=c.execute("select creditor_id from transactions limit 1").fetchone()[0]
tot={}
for rep in range(5):
    rows=c.execute(f"select id, provider_ref from transactions where status='paid' order by id desc limit 1000 offset {rep*1000}").fetchall()
    ids=[r[0] for r in rows]
    items=[r[0] for r in c.execute("select id from items where transaction_id in (select value from json_each(?))",(json.dumps(ids),))]
    T={}
    c.execute("begin immediate")
    t=time.time(); c.executemany("insert into bank_entries (creditor_id, entry_key, imported_at, reference, transaction_id, is_exception, data) values (?,?,?,?,?,0,?)",
        [(cred, f"floor-{rep}-{i}", 1, "RF000", ids[i], data) for i in range(1000)]); T['entries']=time.time()-t
    t=time.time(); c.executemany("update transactions set status='pending', updated_at=?, provider_ref=? where id=? and status='paid'", [(5, f"floor-{rep}-{i}", ids[i]) for i in range(1000)]); T['payments']=time.time()-t
    t=time.time(); c.executemany("update items set state='open' where id=?", [(i,) for i in items]); T['items']=time.time()-t
    t=time.time(); c.executemany("insert into transaction_events (id, transaction_id, at, actor, from_status, to_status, provider_ref, note) values (?,?,?,?,?,?,?,?)",
        [(str(uuid.uuid4()), ids[i], 1, '{"kind":"operator"}', 'pending', 'paid', f"floor-{rep}-{i}", "bank credit x of 2026-11-20 from CITTADINO & FAMIGLIA") for i in range(1000)]); T['events']=time.time()-t
    t=time.time(); c.executemany("insert into outbox (id, transaction_id, creditor_id, payload, status, attempts, next_attempt_at, last_error, created_at, delivered_at) values (?,?,?,?,'pending',0,1,NULL,1,NULL)",
        [(str(uuid.uuid4()), ids[i//2], cred, payload) for i in range(2000)]); T['outbox']=time.time()-t
    t=time.time(); c.execute("commit"); T['commit']=time.time()-t
    for k,v in T.items(): tot.setdefault(k,[]).append(v*1000)
    print(rep, " ".join(f"{k} {v*1000:.1f}" for k,v in T.items()), f"total {sum(T.values())*1000:.1f} ms")
med={k:sorted(v)[len(v)//2] for k,v in tot.items()}
print("median", " ".join(f"{k} {v:.1f}" for k,v in med.items()), f"sum {sum(med.values()):.1f} ms")
