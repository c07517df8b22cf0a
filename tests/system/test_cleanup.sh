#!/usr/bin/env bash
# The tests' shared cleanup: lib.sh owns the one EXIT trap, so no test file sets its own; a test
# that dies part-way (exit 1, or SIGTERM from the harness's timeout while it waits) runs the
# commands it registered with on_exit, last first, and leaves no process it started behind.
source "$(dirname "$0")/lib.sh"

own_traps=$(grep -nE '^[^#]*\btrap\b.*\bEXIT\b' "$ROOT"/tests/system/*.sh | grep -v '/lib\.sh:')
check_eq "no test file sets an EXIT trap of its own (lib.sh's on_exit instead)" "" "$own_traps"

# dying_test MODE: a test that starts a worker (reservation, against this test's stack) and a
# background program, registers two cleanups, then dies by MODE (exit | term).
cat > "$TEST_TMP/dying_test.sh" <<EOF
source "$ROOT/tests/system/lib.sh"
start_bg worker "$ROOT/bin/orderpipe-reservation"
echo "\$bg_pid" > "\$TEST_TMP/worker.pid"
start_bg sleeper sleep 600
echo "\$bg_pid" > "\$TEST_TMP/sleeper.pid"
on_exit 'echo first >> "\$TEST_TMP/cleanups"'
on_exit 'echo "second \$unset_variable" >> "\$TEST_TMP/cleanups"'
case "\$1" in
  exit) exit 1 ;;
  # read is a builtin: no foreground child outlives the shell when the TERM arrives.
  term) mkfifo "\$TEST_TMP/never"; touch "\$TEST_TMP/waiting"; read -r _ <> "\$TEST_TMP/never" ;;
esac
EOF

gone() { ! kill -0 "$1" 2>/dev/null; }
# Processes that inherited TEST_TMP=DIR, wherever they were reparented to.
procs_of() { # DIR
  local e
  for e in /proc/[0-9]*/environ; do
    tr '\0' '\n' < "$e" 2>/dev/null | grep -qxF "TEST_TMP=$1" && basename "$(dirname "$e")"
  done | tr '\n' ' '
}
for mode in exit term; do
  dir=$TEST_TMP/$mode
  mkdir -p "$dir"
  TEST_TMP=$dir bash "$TEST_TMP/dying_test.sh" "$mode" > "$dir/out" 2>&1 &
  runner=$!
  if [ "$mode" = term ]; then
    waiting() { [ -e "$dir/waiting" ]; }
    check "the $mode test reaches its wait" wait_for 120 waiting
    kill -TERM "$runner"
  fi
  wait "$runner"
  rc=$?
  check "the test dying by $mode exits non-zero ($rc)" test "$rc" -ne 0
  check_eq "its on_exit commands ran, last registered first" "second  first" \
    "$(tr '\n' ' ' < "$dir/cleanups" 2>/dev/null | sed 's/ $//')"
  worker=$(cat "$dir/worker.pid" 2>/dev/null)
  sleeper=$(cat "$dir/sleeper.pid" 2>/dev/null)
  check "its worker was started" test -n "$worker"
  check "its worker is gone" gone "${worker:-0}"
  check "its background program is gone" gone "${sleeper:-0}"
  check_eq "no process of it remains" "" "$(procs_of "$dir")"
done
test_done
