"""The longer SQL statements of the PostgreSQL backend (named parameters, psycopg style)."""

from __future__ import annotations

FEED_COLUMNS = ("url", "current_url", "title", "etag", "last_modified", "body_hash", "primed",
                "last_poll_at", "last_status", "last_error", "error_count", "last_success_at",
                "next_poll_at", "disabled_reason", "entries_total", "interval_s")

# A lease no longer holds when it has run out, or when its owner's heartbeat has expired.
_LEASE_VOID = """(
    {t}.lease_until IS NULL OR {t}.lease_until < %(now)s
    OR EXISTS (SELECT 1 FROM nodes d WHERE d.node = {t}.lease_owner AND d.expires_at < %(now)s)
)"""
_RELEASE = """CASE WHEN %(node)s::text IS NULL OR feeds.lease_owner = %(node)s
    OR feeds.lease_until < %(now)s THEN NULL ELSE feeds.{col} END"""

SAVE_FEED = (
    f"INSERT INTO feeds ({', '.join(FEED_COLUMNS)}, host) "
    f"VALUES ({', '.join(f'%({c})s' for c in FEED_COLUMNS)}, %(host)s) "
    "ON CONFLICT (url) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in (*FEED_COLUMNS[1:], "host"))
    + ", lease_owner = " + _RELEASE.format(col="lease_owner")
    + ", lease_until = " + _RELEASE.format(col="lease_until")
)

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
# claim never takes a host past `per_host`; hosts under a Retry-After block are skipped.
CLAIM_DUE = f"""
WITH busy AS (
    SELECT f.host, count(*) AS n FROM feeds f
    WHERE f.lease_owner IS NOT NULL AND f.host <> '' AND NOT {_LEASE_VOID.format(t="f")}
    GROUP BY f.host
), due AS (
    SELECT f.url, f.host, f.next_poll_at,
           row_number() OVER (PARTITION BY f.host ORDER BY f.next_poll_at, f.url)
               + COALESCE(b.n, 0) AS slot
    FROM feeds f LEFT JOIN busy b ON b.host = f.host
    WHERE f.active AND f.disabled_reason IS NULL
      AND COALESCE(f.next_poll_at, '-infinity') <= %(now)s
      AND {_LEASE_VOID.format(t="f")}
      AND NOT EXISTS (SELECT 1 FROM hosts h WHERE h.host = f.host AND h.blocked_until > %(now)s)
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

HEARTBEAT = """
INSERT INTO nodes (node, config_digest, started_at, heartbeat_at, expires_at, inflight,
                   hostname, pid)
VALUES (%(node)s, %(fingerprint)s, %(now)s, %(now)s, %(expires)s, %(inflight)s, %(hostname)s,
        %(pid)s)
ON CONFLICT (node) DO UPDATE SET config_digest = excluded.config_digest,
    heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at,
    inflight = excluded.inflight
"""

NODES = """
SELECT n.*, (SELECT count(*) FROM feeds f
             WHERE f.lease_owner = n.node AND f.lease_until >= %(now)s) AS leased
FROM nodes n ORDER BY n.node
"""

PRUNE: list[tuple[str, str]] = [
    ("alerts", "DELETE FROM alerts WHERE status <> 'owed' AND created_at < %(horizon)s"),
    ("stories", "DELETE FROM stories s WHERE opened_at < %(horizon)s "
                "AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.story_id = s.id)"),
    ("feeds", "DELETE FROM feeds WHERE NOT active AND lease_owner IS NULL "
              "AND COALESCE(last_poll_at, '-infinity') < %(horizon)s"),
    ("seen", "DELETE FROM seen s WHERE NOT EXISTS (SELECT 1 FROM feeds f "
             "WHERE f.url = s.feed_url)"),
    ("seen", "DELETE FROM seen WHERE (feed_url, entry_key) IN (SELECT feed_url, entry_key FROM "
             "(SELECT feed_url, entry_key, row_number() OVER (PARTITION BY feed_url "
             "ORDER BY first_seen DESC, entry_key) AS rn FROM seen) ranked "
             "WHERE rn > %(keep)s)"),
    ("nodes", "DELETE FROM nodes WHERE expires_at < %(node_horizon)s"),
    ("hosts", "DELETE FROM hosts WHERE blocked_until < %(now)s"),
]
