#!/usr/bin/env bash
# The restore drill: orders flow through the pipeline; a base backup is taken while they flow
# (scripts/backup); a moment T in the middle is noted; orders keep flowing; then scripts/restore
# brings the database back as it was at T, in a new data directory on its own port, and the
# restored database is checked: every order recorded before T is there and none recorded after,
# and stock, sold and payments balance (check-invariants --restored; orders in flight at T may be
# non-terminal). Then a damaged backup is refused, and --keep prunes backups and WAL.
source "$(dirname "$0")/lib.sh"
STEP=${RESTORE_DRILL_STEP:-150}   # orders recorded between two moments of the drill

# A private PostgreSQL (WAL archiving on, as scripts/dev-stack makes every server): the backup then
# holds this test's cluster alone, and no other test's server archives anything. RabbitMQ is the
# harness's (this test's vhost).
export ORDERPIPE_STACK_DIR=$TEST_TMP/stack ORDERPIPE_PG_PORT=$(free_base 24000 25000 1 1)
export BACKUP_DIR=$TEST_TMP/backups
STACK="$ROOT/scripts/dev-stack" BACKUP="$ROOT/scripts/backup" RESTORE="$ROOT/scripts/restore"
# Cleanups run last-registered first: the pipeline stops, then the restored server, then the
# private stack; the WAL archive may live under /var/tmp (as root, see scripts/lib/pgserver.sh).
on_exit 'wal=$(readlink -f "$BACKUP_DIR/wal"); case "$wal" in /var/tmp/orderpipe-wal.*) rm -rf "${wal%/*}" ;; esac'
on_exit '"$STACK" destroy >/dev/null 2>&1'
on_exit '[ ! -e "$TEST_TMP/restored" ] || "$RESTORE" --drop "$TEST_TMP/restored" >/dev/null 2>&1'
on_exit '"$ROOT/scripts/pipeline" down >/dev/null 2>&1'
"$STACK" start-pg > "$TEST_TMP/stack.log" 2>&1 || { cat "$TEST_TMP/stack.log"; not_ok "private PostgreSQL starts"; exit 1; }
# Its URLs (`dev-stack env` also wants the stack's RabbitMQ and API key, which this one lacks).
export DATABASE_URL=postgresql://orderpipe@127.0.0.1:$ORDERPIPE_PG_PORT/orderpipe
export PG_ADMIN_URL=postgresql://postgres@127.0.0.1:$ORDERPIPE_PG_PORT/postgres
export PGPASSFILE=$ORDERPIPE_STACK_DIR/pgpass
check_eq "the test's database is on its private server" "$ORDERPIPE_PG_PORT" "$(sql "show port")"
check_eq "the dev stack's server archives WAL" on "$(sql "show archive_mode")"

pipeline_env
seed_stock 20 400 40
check "pipeline starts" "$ROOT/scripts/pipeline" up
start_bg load orderpipe-loadgen --orders 1000000 --rate 40 --connections 4 --skus 20 \
  --mix ok=70,oos=5,decline=10,flaky=5,hot=10 --accepted "$TEST_TMP/accepted"
load_pid=$bg_pid
orders() { sql "select count(*) from orders"; }
recorded() { [ "$(orders)" -ge "$1" ]; }
check "orders flow ($STEP recorded)" wait_for 300 recorded "$STEP"

started=$SECONDS
"$BACKUP" > "$TEST_TMP/backup.id" 2> "$TEST_TMP/backup.log"
check "a base backup is taken while orders flow" test $? = 0
id=$(cat "$TEST_TMP/backup.id")
echo "# backup $id took $((SECONDS - started)) s"
check "the backup is listed, verified by pg_verifybackup" bash -c \
  "'$BACKUP' --list | grep -E '^$id .* yes\$'"
n=$(orders)
check "orders keep flowing after the backup" wait_for 300 recorded $((n + STEP))

# The moment T, bracketed by the orders recorded just before and just after it: the restored
# database must hold every order of the first list and nothing outside the second. A commit is
# stamped before its WAL is flushed and seen only after, so the second list waits until every
# transaction that had begun by T has ended (the oldest one running is younger than them all).
sql "select id from orders order by id" > "$TEST_TMP/before"
T=$(date -u +%FT%T.%6NZ)
xmax=$(sql "select pg_snapshot_xmax(pg_current_snapshot())")
settled() { [ "$(sql "select pg_snapshot_xmin(pg_current_snapshot()) >= '$xmax'::xid8")" = t ]; }
check "the transactions running at T end" wait_for 60 settled
sql "select id from orders order by id" > "$TEST_TMP/after"
echo "# T = $T; $(wc -l < "$TEST_TMP/before") orders recorded before it"
check "orders keep flowing after T" wait_for 300 recorded $(($(wc -l < "$TEST_TMP/after") + STEP))
kill -TERM "$load_pid"
wait "$load_pid"
check "WAL past T is archived" "$BACKUP" --switch-wal

rport=$(free_base 24000 25000 1 1)
started=$SECONDS
url=$("$RESTORE" --to "$T" --target-dir "$TEST_TMP/restored" --port "$rport" 2> "$TEST_TMP/restore.log")
check "scripts/restore --to T prints the restored DATABASE_URL" test -n "$url"
cat "$TEST_TMP/restore.log"
echo "# restore took $((SECONDS - started)) s"
rsql() { psql -X -q -tA -v ON_ERROR_STOP=1 "$url" -c "$1"; }
check_eq "the restored server is a primary on its own port" "f $rport" \
  "$(rsql "select pg_is_in_recovery(), current_setting('port')" | tr '|' ' ')"
check_eq "the restored server archives nothing" off "$(rsql "show archive_mode")"
rsql "select id from orders order by id" > "$TEST_TMP/restored.ids"
check_eq "every order recorded before T is restored" 0 \
  "$(comm -23 "$TEST_TMP/before" "$TEST_TMP/restored.ids" | wc -l)"
check_eq "no order recorded after T is restored" 0 \
  "$(comm -13 "$TEST_TMP/after" "$TEST_TMP/restored.ids" | wc -l)"
check_eq "no restored order was placed after T" 0 \
  "$(rsql "select count(*) from orders where placed_at > '$T'")"
check "the live database went on past T" \
  test "$(sql "select count(*) from orders where placed_at > '$T'")" -gt 0
echo "# restored: $(wc -l < "$TEST_TMP/restored.ids") orders," \
  "$(rsql "select count(*) from orders where status not in ('confirmed','cancelled')") in flight at T"
DATABASE_URL=$url "$ROOT/scripts/check-invariants" --restored > "$TEST_TMP/inv.restored" 2>&1
rc=$?
cat "$TEST_TMP/inv.restored"
check "stock, sold and payments balance on the restored database" test $rc = 0
check "the live database is untouched by the restore" recorded "$(wc -l < "$TEST_TMP/after")"

# The live pipeline drains and every invariant holds there too, at rest.
want=$(sort -u "$TEST_TMP/accepted" | wc -l)
terminal() { [ "$(sql "select count(*) from orders where status in ('confirmed','cancelled')")" -ge "$want" ]; }
check "all $want accepted orders reach a terminal state" wait_for 240 terminal
check "the pipeline goes idle" wait_for 120 pipeline_idle
"$ROOT/scripts/check-invariants" --accepted "$TEST_TMP/accepted" > "$TEST_TMP/inv.live"
check "every invariant holds on the live database" test $? = 0

# A backup that lost a file fails pg_verifybackup, and restore refuses it, leaving nothing behind.
bad=19700101T000000Z
cp -r "$BACKUP_DIR/base/$id" "$BACKUP_DIR/base/$bad"
sed -i 's/^finished=.*/finished=1/' "$BACKUP_DIR/base/$bad/info"
zstd -q -d --rm "$BACKUP_DIR/base/$bad/base.tar.zst"
tar --delete -f "$BACKUP_DIR/base/$bad/base.tar" global/pg_control
check "restore refuses a backup that fails pg_verifybackup" bash -c \
  "! '$RESTORE' --to '$T' --backup $bad --target-dir '$TEST_TMP/damaged' >/dev/null 2>'$TEST_TMP/damaged.log'"
check "and leaves no directory behind" test ! -e "$TEST_TMP/damaged"
rm -rf "${BACKUP_DIR:?}/base/$bad"

# --keep 1 after a second backup: the first goes, with every WAL segment before the second's start;
# T is then before every backup, and restore says so.
"$BACKUP" > "$TEST_TMP/backup2.id" 2>> "$TEST_TMP/backup.log"
id2=$(cat "$TEST_TMP/backup2.id")
check "a second backup is taken" test -n "$id2" -a "$id2" != "$id"
check "--keep 1 prunes" "$BACKUP" --keep 1
check_eq "one backup is left, the newest" "$id2" "$(ls "$BACKUP_DIR/base")"
start_wal=$(sed -n 's/^start_wal=//p' "$BACKUP_DIR/base/$id2/info")
check_eq "no WAL segment before its start is left" 0 \
  "$(ls "$BACKUP_DIR/wal/" | grep -E '^[0-9A-F]{24}$' | awk -v s="$start_wal" '$0 < s' | wc -l)"
"$RESTORE" --to "$T" --target-dir "$TEST_TMP/early" > /dev/null 2> "$TEST_TMP/early.log"
check "restore to a time before every backup is refused" test $? != 0
check "saying why" grep -q 'no backup finished before' "$TEST_TMP/early.log"
test_done
