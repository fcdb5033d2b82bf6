#!/usr/bin/env bash
# common/db.c against the stack's PostgreSQL: prepared statements are
# transparent and survive the session losing them (tests/unit/db_test.c).
. "$(dirname "$0")/../lib.sh"
cm_start || exit 1
"$CM_BIN/casemail-db-test" "$CASEMAIL_DB"

