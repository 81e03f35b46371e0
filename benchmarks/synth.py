"""Synthetic action stores of any size, made inside DuckDB (fast enough for 10M rows)."""

from __future__ import annotations

from pathlib import Path

from gatekit.logs.store import Store

TOOLS = ["db.query", "crm.lookup", "docs.search", "tickets.read", "kb.search", "payment.send", "payment.refund",
         "db.update", "db.delete", "db.drop_table", "email.send", "email.campaign.send", "deploy.service",
         "deploy.rollback", "infra.scale", "infra.iam.grant", "data.export", "vault.read"]


def rows_sql(first: int, last: int) -> str:
    """The SELECT of actions `first`..`last` (1-based, inclusive) as the store's `actions` columns: a realistic
    mix of tools, args and context, 5 actions a second; action `i` is the same row whatever range holds it."""
    tools = "[" + ", ".join(f"'{t}'" for t in TOOLS) + "]"
    return f"""
        SELECT i AS seq, 'b-' || i AS action_id,
               TIMESTAMPTZ '2026-10-01 00:00:00+00' + to_microseconds(i * 200000) AS ts,
               'agent-' || (hash(i, 1) % 12) AS agent,
               's-' || (i // 25) AS session,
               'u-' || (hash(i, 2) % 400) AS "user",
               {tools}[1 + CAST(hash(i, 3) % {len(TOOLS)} AS INTEGER)] AS tool,
               json_object(
                 'amount', CASE WHEN hash(i, 4) % 50 = 0 THEN to_json(CAST(round((hash(i, 5) % 5000000) / 100.0, 2) AS VARCHAR))
                                ELSE to_json(round((hash(i, 5) % 2000000) / 100.0, 2)) END,
                 'recipient', (['acme', 'globex', 'initech', 'mallory', 'umbrella'])[1 + CAST(hash(i, 6) % 5 AS INTEGER)],
                 'rows_affected', hash(i, 7) % 5000,
                 'rows', hash(i, 8) % 300000,
                 'destination', (['s3://internal/x', 's3://partner.bucket/y', 'https://external.example/z'])[1 + CAST(hash(i, 9) % 3 AS INTEGER)],
                 'role', (['viewer', 'editor', 'org-admin'])[1 + CAST(hash(i, 10) % 3 AS INTEGER)],
                 'replicas', hash(i, 11) % 80,
                 'recipients', hash(i, 12) % 9000,
                 'to', (['a@example.com', 'b@customer.org', 'c@example.com'])[1 + CAST(hash(i, 13) % 3 AS INTEGER)],
                 'path', (['secret/prod/db', 'secret/dev/x', 'kv/app'])[1 + CAST(hash(i, 14) % 3 AS INTEGER)]) AS args,
               json_object('env', (['prod', 'staging', 'dev'])[1 + CAST(hash(i, 15) % 3 AS INTEGER)]) AS context
        FROM range({first}, {last} + 1) t(i)
        """


def build(path: Path, n: int) -> Path:
    """A store at `path` with `n` actions (`rows_sql(1, n)`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    with Store(path) as store:
        store.con.execute('INSERT INTO actions (seq, action_id, ts, agent, session, "user", tool, args, context) '
                          + rows_sql(1, n))
        store.con.execute("CHECKPOINT")
    return path
