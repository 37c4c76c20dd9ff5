"""The PostgreSQL-only statements (psycopg parameters): syncing the feed list, and claiming
feeds and alerts with SELECT ... FOR UPDATE SKIP LOCKED."""

from __future__ import annotations

from watcher.store.sql import LEASE_VOID, PostgresDialect

_LEASE_VOID = PostgresDialect().render(LEASE_VOID)

SYNC_FEEDS = """
WITH retired AS (
    UPDATE feeds SET active = false WHERE active AND NOT (url = ANY(%(urls)s::text[]))
)
INSERT INTO feeds (url, host, next_poll_at, active)
SELECT u, h, %(now)s + random() * %(spread)s * interval '1 second', true
FROM unnest(%(urls)s::text[], %(hosts)s::text[]) AS t(u, h)
ORDER BY u
ON CONFLICT (url) DO UPDATE SET active = true,
    host = CASE WHEN feeds.host = '' THEN excluded.host ELSE feeds.host END
WHERE NOT feeds.active OR feeds.host = ''
"""

# Due feeds, ranked per host after the leases that host already has (cluster-wide), so a
# claim never takes a host past `per_host`; hosts under a Retry-After block and hosts at
# their cap are skipped. The candidates are the first `scan` due feeds by the index
# feeds_due (a range, not every feed: 50,000 feeds), the rest are left for the next claim.
CLAIM_DUE = f"""
WITH busy AS (
    SELECT f.host, count(*) AS n FROM feeds f
    WHERE f.lease_owner IS NOT NULL AND f.host <> '' AND NOT {_LEASE_VOID.format(t="f")}
    GROUP BY f.host
), candidates AS (
    SELECT f.url, f.host, f.next_poll_at FROM feeds f
    WHERE f.active AND f.disabled_reason IS NULL AND f.next_poll_at <= %(now)s
      AND {_LEASE_VOID.format(t="f")}
      AND NOT EXISTS (SELECT 1 FROM hosts h WHERE h.host = f.host AND h.blocked_until > %(now)s)
      AND NOT EXISTS (SELECT 1 FROM busy b WHERE b.host = f.host AND f.host <> ''
                      AND b.n >= %(per_host)s)
    ORDER BY f.next_poll_at
    LIMIT %(scan)s
), due AS (
    SELECT c.url, c.host, c.next_poll_at,
           row_number() OVER (PARTITION BY c.host ORDER BY c.next_poll_at, c.url)
               + COALESCE(b.n, 0) AS slot
    FROM candidates c LEFT JOIN busy b ON b.host = c.host
), picked AS (
    SELECT f.url FROM feeds f JOIN due ON due.url = f.url
    WHERE due.host = '' OR due.slot <= %(per_host)s
    ORDER BY due.next_poll_at NULLS FIRST, due.url
    LIMIT %(limit)s
    FOR UPDATE OF f SKIP LOCKED
)
UPDATE feeds SET lease_owner = %(node)s, lease_until = %(until)s
FROM picked WHERE feeds.url = picked.url
RETURNING feeds.*
"""

CLAIM_ALERTS = f"""
WITH picked AS (
    SELECT a.id FROM alerts a
    WHERE a.status = 'owed' AND a.next_attempt_at <= %(now)s AND {_LEASE_VOID.format(t="a")}
    ORDER BY a.next_attempt_at, a.id
    LIMIT %(limit)s
    FOR UPDATE OF a SKIP LOCKED
)
UPDATE alerts SET lease_owner = %(node)s, lease_until = %(until)s
FROM picked WHERE alerts.id = picked.id
RETURNING alerts.id, alerts.topic, alerts.channel, alerts.story_id, alerts.payload,
          alerts.attempts, alerts.created_at, alerts.next_attempt_at, alerts.sent_to
"""
