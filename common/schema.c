/*  common/schema.c: the database schema as numbered migrations. A release
    only ever appends a migration; an applied one is never edited.
    PostgreSQL is the system of record: every fact lives here. */
#include "db.h"

const char *const cm_schema_migrations [] = {
/* 1: routes, inbound messages, incidents and their timeline, outbox. */
"CREATE TABLE routes ("
"  id            bigserial PRIMARY KEY,"
"  name          text NOT NULL UNIQUE,"
"  config        jsonb NOT NULL,"          /* settings; secrets sealed */
"  account       text NOT NULL UNIQUE,"    /* lower(username@host): one route per mailbox account */
"  desired       text NOT NULL DEFAULT 'stopped' CHECK (desired IN ('running','stopped')),"
"  status        text NOT NULL DEFAULT 'STOPPED'"
"                CHECK (status IN ('STOPPED','STARTING','RUNNING','FAILED')),"
"  status_since  timestamptz NOT NULL DEFAULT now(),"
"  last_error    text,"
"  last_error_at timestamptz,"
"  fail_count    integer NOT NULL DEFAULT 0,"
"  created_at    timestamptz NOT NULL DEFAULT now(),"
"  updated_at    timestamptz NOT NULL DEFAULT now()"
");"
/* The UID cursor of each route's folder; moves in the same transaction
   as the raw messages it covers. */
"CREATE TABLE route_cursors ("
"  route_id      bigint NOT NULL REFERENCES routes ON DELETE CASCADE,"
"  folder        text NOT NULL,"
"  uidvalidity   bigint NOT NULL,"
"  last_uid      bigint NOT NULL DEFAULT 0,"
"  updated_at    timestamptz NOT NULL DEFAULT now(),"
"  PRIMARY KEY (route_id, folder)"
");"
/* Every inbound message, raw bytes kept as evidence. */
"CREATE TABLE messages ("
"  id            bigserial PRIMARY KEY,"
"  route_id      bigint REFERENCES routes ON DELETE SET NULL," /* evidence outlives its route */
"  folder        text NOT NULL,"
"  uidvalidity   bigint NOT NULL,"
"  uid           bigint NOT NULL,"
"  message_id    text,"
"  raw_sha256    text NOT NULL,"
"  size          bigint NOT NULL,"
"  raw           bytea,"
"  state         text NOT NULL DEFAULT 'fetched'"
"                CHECK (state IN ('fetched','parsed','rejected')),"
"  reason        text,"
"  subject       text,"
"  from_addr     text,"
"  flags         text[] NOT NULL DEFAULT '{}',"
"  incident_id   bigint,"
"  fetched_at    timestamptz NOT NULL DEFAULT now(),"
"  parsed_at     timestamptz,"
"  UNIQUE (route_id, folder, uidvalidity, uid)"
");"
"CREATE INDEX messages_pending ON messages (id) WHERE state = 'fetched';"
/* How often a parser started on a message without finishing (it died):
   a message that keeps killing parsers is rejected, not retried forever. */
"CREATE TABLE parse_attempts ("
"  message_id    bigint PRIMARY KEY REFERENCES messages ON DELETE CASCADE,"
"  attempts      integer NOT NULL DEFAULT 0"
");"
"CREATE INDEX messages_identity ON messages (route_id, message_id, raw_sha256);"
"CREATE INDEX messages_route_state ON messages (route_id, state);"
"CREATE TABLE incidents ("
"  id            bigserial PRIMARY KEY,"
"  number        bigint NOT NULL UNIQUE,"
"  route_id      bigint REFERENCES routes ON DELETE SET NULL,"
"  title         text NOT NULL,"
"  description   text NOT NULL DEFAULT '',"
"  reporter      text NOT NULL DEFAULT '',"
"  status        text NOT NULL DEFAULT 'open',"
"  source_message bigint UNIQUE,"          /* the message that opened it: idempotence */
"  created_at    timestamptz NOT NULL DEFAULT now()"
");"
"CREATE SEQUENCE incident_number_seq OWNED BY incidents.number;"
/* Outbound incident email; claimed by senders with SKIP LOCKED. */
"CREATE TABLE outbox ("
"  id            bigserial PRIMARY KEY,"
"  incident_id   bigint NOT NULL REFERENCES incidents ON DELETE CASCADE,"
"  route_id      bigint REFERENCES routes ON DELETE SET NULL,"
"  message_id    text NOT NULL UNIQUE,"
"  mail_from     text NOT NULL,"
"  rcpt_to       text[] NOT NULL,"
"  cc            text[] NOT NULL DEFAULT '{}',"
"  bcc           text[] NOT NULL DEFAULT '{}',"  /* envelope only, never a header */
"  subject       text NOT NULL,"
"  body          text NOT NULL,"
"  html          text,"
"  in_reply_to   text,"
"  refs          text,"
"  mime          bytea,"                   /* built once, then resent byte for byte */
"  state         text NOT NULL DEFAULT 'queued'"
"                CHECK (state IN ('queued','sending','sent','failed','bounced')),"
"  attempts      integer NOT NULL DEFAULT 0,"
"  next_attempt_at timestamptz NOT NULL DEFAULT now(),"
"  last_error    text,"
"  smtp_reply    text,"
"  dsn_status    text,"
"  created_at    timestamptz NOT NULL DEFAULT now(),"
"  sent_at       timestamptz"
");"
"CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'queued';"
/* The incident's conversation: inbound messages and outbound emails. */
"CREATE TABLE timeline ("
"  id            bigserial PRIMARY KEY,"
"  incident_id   bigint NOT NULL REFERENCES incidents ON DELETE CASCADE,"
"  direction     text NOT NULL CHECK (direction IN ('in','out')),"
"  inbound_id    bigint UNIQUE REFERENCES messages ON DELETE SET NULL,"
"  outbox_id     bigint UNIQUE REFERENCES outbox ON DELETE SET NULL,"
"  message_id    text,"
"  from_addr     text NOT NULL DEFAULT '',"
"  to_text       text NOT NULL DEFAULT '',"
"  cc_text       text NOT NULL DEFAULT '',"
"  subject       text NOT NULL DEFAULT '',"
"  date_text     text,"
"  body_text     text NOT NULL DEFAULT '',"
"  new_text      text NOT NULL DEFAULT '',"
"  quoted_text   text,"
"  html          text,"
"  flags         text[] NOT NULL DEFAULT '{}',"
"  created_at    timestamptz NOT NULL DEFAULT now()"
");"
"CREATE INDEX timeline_message_id ON timeline (message_id);"
"CREATE INDEX timeline_incident ON timeline (incident_id, id);"
/* References seen on each timeline entry, for threading replies. */
"CREATE TABLE thread_ids ("
"  message_id    text NOT NULL,"
"  incident_id   bigint NOT NULL REFERENCES incidents ON DELETE CASCADE,"
"  PRIMARY KEY (message_id, incident_id)"
");"
"CREATE TABLE attachments ("
"  id            bigserial PRIMARY KEY,"
"  incident_id   bigint REFERENCES incidents ON DELETE CASCADE,"
"  timeline_id   bigint REFERENCES timeline ON DELETE CASCADE,"
"  outbox_id     bigint REFERENCES outbox ON DELETE CASCADE,"
"  parent_id     bigint REFERENCES attachments ON DELETE CASCADE," /* nested mail */
"  depth         integer NOT NULL DEFAULT 0,"
"  filename      text NOT NULL,"
"  content_type  text NOT NULL,"
"  content_id    text,"
"  is_inline     boolean NOT NULL DEFAULT false,"
"  is_message    boolean NOT NULL DEFAULT false,"
"  size          bigint NOT NULL,"
"  sha256        text NOT NULL,"
"  note          text,"
"  headers       jsonb,"                   /* for attached mail: subject, from, ... */
"  data          bytea NOT NULL"
");"
"CREATE INDEX attachments_timeline ON attachments (timeline_id);"
"CREATE INDEX attachments_outbox ON attachments (outbox_id);",
/* 2: Exchange (EWS) routes: SyncState cursor, item ids, negotiated version. */
"ALTER TABLE route_cursors ADD COLUMN sync_state text;"
"ALTER TABLE messages ADD COLUMN item_id text;"
"CREATE UNIQUE INDEX messages_item ON messages (route_id, folder, item_id)"
"  WHERE item_id IS NOT NULL;"
"CREATE SEQUENCE ews_uid_seq;"
"ALTER TABLE routes ADD COLUMN exchange_version_used text;",
/* 3: LZ4 for the big columns: PostgreSQL's default (pglz) compression was
   the largest single cost of storing mail. A server built without LZ4
   keeps pglz; nothing else changes. */
"DO $$ BEGIN"
"  ALTER TABLE messages ALTER COLUMN raw SET COMPRESSION lz4;"
"  ALTER TABLE attachments ALTER COLUMN data SET COMPRESSION lz4;"
"  ALTER TABLE timeline ALTER COLUMN body_text SET COMPRESSION lz4,"
"    ALTER COLUMN new_text SET COMPRESSION lz4, ALTER COLUMN quoted_text SET COMPRESSION lz4,"
"    ALTER COLUMN html SET COMPRESSION lz4;"
"  ALTER TABLE incidents ALTER COLUMN description SET COMPRESSION lz4;"
"  ALTER TABLE outbox ALTER COLUMN mime SET COMPRESSION lz4;"
"EXCEPTION WHEN feature_not_supported OR syntax_error THEN"
"  RAISE NOTICE 'LZ4 compression is not available: columns keep pglz';"
"END $$;",
/* 4: no index entry that nothing reads. No query looks timeline up by
   Message-ID (threading reads thread_ids), and an inbound entry or
   attachment has no outbox row: the outbox indexes cover only the rows
   that have one, instead of a NULL for every inbound message. Less to
   write and to keep; the store statement's time did not change beyond
   the noise of measuring it. */
"DROP INDEX timeline_message_id;"
"ALTER TABLE timeline DROP CONSTRAINT timeline_outbox_id_key;"
"CREATE UNIQUE INDEX timeline_outbox_id_key ON timeline (outbox_id)"
"  WHERE outbox_id IS NOT NULL;"
"DROP INDEX attachments_outbox;"
"CREATE INDEX attachments_outbox ON attachments (outbox_id) WHERE outbox_id IS NOT NULL;",
/* 5: a parser counts its claim with one row that lists the claimed
   messages, not with a row per message: a message's tries are the rows
   that name it. The parser deletes its row once its batch is committed;
   the rows of parsers that died stay until every message they name is
   settled. (A row per message, with its foreign key, was a twentieth of
   the database's time.) The counts of parse_attempts carry over. */
"CREATE TABLE parse_claims ("
"  id            bigserial PRIMARY KEY,"
"  message_ids   bigint[] NOT NULL,"
"  claimed_at    timestamptz NOT NULL DEFAULT now()"
");"
"INSERT INTO parse_claims (message_ids)"
"  SELECT ARRAY [a.message_id] FROM parse_attempts a, generate_series (1, a.attempts);"
"DROP TABLE parse_attempts;",
/* 6: --since limits the mail that was in the folder when the route first
   started (or when UIDVALIDITY changed): the highest UID then. A first
   pass cut short (a restart, a dropped connection) goes on with the same
   limit, and mail that arrives later is taken whatever its date. NULL:
   no limit (no --since, or a cursor from before this version). */
"ALTER TABLE route_cursors ADD COLUMN since_top bigint;",
/* 7: an email's recipients are settled one by one: those that took it
   (`delivered`) and those the server refused for good (`refused`, with
   the server's answers in `refusals`, the lead of last_error). A
   later attempt goes to the others alone, so one refused Cc neither
   keeps the email from the rest nor sends it twice to anyone. */
"ALTER TABLE outbox ADD COLUMN delivered text[] NOT NULL DEFAULT '{}';"
"ALTER TABLE outbox ADD COLUMN refused text[] NOT NULL DEFAULT '{}';"
"ALTER TABLE outbox ADD COLUMN refusals text;",
/* 8: a claim the database refused keeps its words, so that a message
   refused at every try is rejected with them. */
"ALTER TABLE parse_claims ADD COLUMN error text;",
/* 9: a long pass (fetcher/lanes.c) acknowledges its messages to the
   mailbox once, at its end: committed messages of the folder above
   ack_from may not be acknowledged yet, and the next login acknowledges
   them. NULL: only the newest batch may not be. ack_gen counts the
   commits made under a deferral, so one that lands while a login
   acknowledges keeps the deferral from being ended. */
("ALTER TABLE route_cursors ADD COLUMN ack_from bigint,"
 " ADD COLUMN ack_gen bigint NOT NULL DEFAULT 0;")
};

const int cm_schema_count = sizeof cm_schema_migrations / sizeof cm_schema_migrations [0];
