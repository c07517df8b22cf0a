#!/usr/bin/env bash
# The README's configuration table names every environment variable a program reads. The names
# come from the code, never from a list kept here: the source's getenv and config_env_* calls
# (wrappers such as broker_url's env_default included) and the [VARIABLE]s each program's --help
# shows beside its flags.
source "$(dirname "$0")/lib.sh"

table=$(awk '/^## Configuration/ { on = 1; next } /^## / { on = 0 } on && /^\| `/' "$ROOT/README.md" |
  cut -d'|' -f2 | grep -oE '`[A-Z][A-Z0-9_]+`' | tr -d '`' | sort -u)
check "the README's configuration table was read" test "$(wc -w <<< "$table")" -gt 1

from_source=$(cd "$ROOT" && perl -0777 -ne '
  while (/\b\w*(?:getenv|env)\w*\s*\([^;"]{0,80}?"([A-Z][A-Z0-9]*_[A-Z0-9_]+)"/g) { print "$1\n" }' \
  $(find lib producers workers tools -name '*.c') | sort -u)
check "the variables the source reads were found" test "$(wc -w <<< "$from_source")" -gt 1

from_help=$(for b in "$ROOT"/bin/orderpipe-*; do timeout 10 "$b" --help 2>&1; done |
  perl -ne 'while (/\[([A-Z][A-Z0-9_, =0-9a-z]*)\]/g) { print "$_\n" for $1 =~ /\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)\b/g }' |
  sort -u)
check "the variables the programs' --help shows were found" test "$(wc -w <<< "$from_help")" -gt 1

for v in $(sort -u <<< "$from_source"$'\n'"$from_help"); do
  check "$v (read by a program) is in the README's configuration table" grep -qxF "$v" <<< "$table"
done
test_done
