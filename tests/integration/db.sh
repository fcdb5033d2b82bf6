#!/usr/bin/env bash
# common/db.c against the stack's PostgreSQL: prepared statements are
# transparent and survive the session losing them, and a session sets its
# own client encoding and isolation (tests/unit/db_test.c).
. "$(dirname "$0")/../lib.sh"
cm_start || exit 1
# other defaults than casemail's for every new session: the test checks
# that its sessions set their own
psql -X -q "$CASEMAIL_DB" -c "DO \$\$ BEGIN
    EXECUTE format('ALTER DATABASE %I SET client_encoding = %L', current_database(), 'LATIN1');
    EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = %L', current_database(), 'serializable');
END \$\$" >/dev/null
"$CM_BIN/casemail-db-test" "$CASEMAIL_DB"

