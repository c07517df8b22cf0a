#!/usr/bin/env bash
# deploy/systemd: the units are valid (systemd-analyze verify, when it is installed, with the
# programs of bin/ standing in for /usr/local/bin/), each starts a program that exists, drains on
# SIGTERM, restarts on failure, has resource limits and hardening, gives every worker instance its
# own /metrics port, and the example env file names every variable the programs read (and no
# other). Needs no server: the dev stack's env is ignored.
source "$(dirname "$0")/lib.sh"
D=$ROOT/deploy/systemd
WORKERS=(reservation payment notification compensation)
SERVICES=(orderpipe-intake@.service orderpipe-outbox-relay.service)
for w in "${WORKERS[@]}"; do SERVICES+=("orderpipe-$w@.service"); done

check "deploy/systemd/orderpipe.target exists" test -f "$D/orderpipe.target"
check "deploy/systemd/README.md exists" test -s "$D/README.md"
check "deploy/systemd/orderpipe.env.example exists" test -s "$D/orderpipe.env.example"
check "no other unit files than the ones this test knows" test \
  "$(cd "$D" && ls *.service *.target | sort | tr '\n' ' ')" = \
  "$(printf '%s\n' "${SERVICES[@]}" orderpipe.target | sort | tr '\n' ' ')"

# value KEY FILE -> the value of the last KEY= line of the [Service] section
value() { sed -n '/^\[Service\]/,/^\[/p' "$2" | grep -E "^$1=" | tail -1 | cut -d= -f2-; }
# section_has SECTION KEY=VALUE FILE
section_has() { sed -n "/^\[$1\]/,/^\[/p" "$3" | grep -qxF "$2"; }

# --- the grep-based lint: always, so a missing systemd-analyze never hides a bad unit ---
for s in "${SERVICES[@]}"; do
  f=$D/$s
  if ! check "$s exists" test -f "$f"; then continue; fi
  exec_start=$(value ExecStart "$f")
  prog=${exec_start%% *}
  check "$s: ExecStart is an absolute path" test "${prog:0:1}" = /
  check "$s: ExecStart's program $(basename "$prog") is built in bin/" test -x "$ROOT/bin/$(basename "$prog")"
  check_eq "$s: runs as orderpipe" orderpipe "$(value User "$f")"
  check_eq "$s: reads /etc/orderpipe/orderpipe.env" /etc/orderpipe/orderpipe.env "$(value EnvironmentFile "$f")"
  check_eq "$s: restarts on failure" on-failure "$(value Restart "$f")"
  check "$s: waits before restarting" grep -Eq '^[1-9][0-9]*(ms|s)?$' <<< "$(value RestartSec "$f")"
  check_eq "$s: a configuration error (exit 2) is not restarted" 2 "$(value RestartPreventExitStatus "$f")"
  check_eq "$s: stops with SIGTERM (the drain)" SIGTERM "$(value KillSignal "$f")"
  check "$s: gives the drain time before SIGKILL (TimeoutStopSec >= 30)" \
    test "$(value TimeoutStopSec "$f" | tr -dc 0-9)" -ge 30
  check "$s: MemoryMax set" grep -Eq '^[0-9]+[KMG]$' <<< "$(value MemoryMax "$f")"
  check "$s: TasksMax set" grep -Eq '^[0-9]+$' <<< "$(value TasksMax "$f")"
  check "$s: LimitNOFILE set" grep -Eq '^[0-9]+$' <<< "$(value LimitNOFILE "$f")"
  for h in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes PrivateDevices=yes \
           RestrictAddressFamilies='AF_UNIX AF_INET AF_INET6' SystemCallFilter=@system-service CapabilityBoundingSet=; do
    check "$s: $h" section_has Service "$h" "$f"
  done
  check "$s: part of orderpipe.target" section_has Unit PartOf=orderpipe.target "$f"
  check "$s: enabled into orderpipe.target" section_has Install WantedBy=orderpipe.target "$f"
  check "$s: no unknown section" test -z "$(grep -E '^\[' "$f" | grep -vxE '\[(Unit|Service|Install)\]')"
done

# Every worker instance has a /metrics port of its own: 127.0.0.1:9<N>0%i, a different N per worker.
ports=""
for w in "${WORKERS[@]}"; do
  f=$D/orderpipe-$w@.service
  listen=$(value ExecStart "$f" | grep -o -- '--metrics-listen [^ ]*' | cut -d' ' -f2)
  check "orderpipe-$w@: --metrics-listen per instance (%i)" grep -Eq '^127\.0\.0\.1:9[0-9]0%i$' <<< "$listen"
  check "orderpipe-$w accepts --metrics-listen" grep -q -- '--metrics-listen' <(timeout 5 "$ROOT/bin/orderpipe-$w" --help)
  for i in 1 4 9; do
    p=${listen#*:}; p=${p//%i/$i}
    check "orderpipe-$w@$i: metrics port $p is a valid unprivileged port" test "$p" -ge 1024 -a "$p" -le 65535
    ports="$ports $p"
  done
done
# The intake's /metrics is on a loopback port per instance too, never on the public INTAKE_LISTEN.
listen=$(value ExecStart "$D/orderpipe-intake@.service" | grep -o -- '--metrics-listen [^ ]*' | cut -d' ' -f2)
check "orderpipe-intake@: --metrics-listen per instance on loopback (%i)" grep -Eq '^127\.0\.0\.1:900%i$' <<< "$listen"
check "orderpipe-intake accepts --metrics-listen" grep -q -- '--metrics-listen' <(timeout 5 "$ROOT/bin/orderpipe-intake" --help)
ports="$ports 9001 9004 9009"
check_eq "no two worker instances share a metrics port" 0 "$(tr ' ' '\n' <<< "$ports" | grep . | sort | uniq -d | wc -l)"
check "the notification worker may write its log file" section_has Service LogsDirectory=orderpipe "$D/orderpipe-notification@.service"
check "NOTIFY_LOG_FILE is under that directory" grep -qx 'NOTIFY_LOG_FILE=/var/log/orderpipe/.*' "$D/orderpipe.env.example"
check "the intake units share INTAKE_LISTEN (SO_REUSEPORT in the intake)" grep -q SO_REUSEPORT "$ROOT/producers/intake/intake_http.c"
check "orderpipe.target is wanted by multi-user.target" section_has Install WantedBy=multi-user.target "$D/orderpipe.target"

# --- the example env file: every variable read by a program, and only those ---
read_vars=$(grep -rhoE '[a-z_]*env[a-z_]*\(([^,()]*, *)?"[A-Z][A-Z0-9_]*"' "$ROOT/lib" "$ROOT/workers" "$ROOT/producers" "$ROOT/tools" \
  --include='*.c' | sed -E 's/.*"([A-Z][A-Z0-9_]*)"$/\1/' | sort -u)
env_vars=$(grep -oE '^#?[A-Z][A-Z0-9_]*=' "$D/orderpipe.env.example" | tr -d '#=' | sort -u)
check "the programs read some variables (the grep works)" test "$(wc -l <<< "$read_vars")" -ge 20
missing=$(comm -23 <(echo "$read_vars") <(echo "$env_vars") | tr '\n' ' ')
extra=$(comm -13 <(echo "$read_vars") <(echo "$env_vars") | tr '\n' ' ')
check_eq "orderpipe.env.example lists every variable the programs read" "" "$missing"
check_eq "orderpipe.env.example lists no variable nobody reads" "" "$extra"
check "the example env file has no export or shell expansion" test -z "$(grep -E '^(export |[A-Z_]+=.*\$)' "$D/orderpipe.env.example")"

# --- systemd-analyze verify, when there is one (nothing is installed for it) ---
if command -v systemd-analyze >/dev/null; then
  V=$TEST_TMP/units
  mkdir -p "$V"
  for f in "$D"/*.service "$D"/*.target; do
    sed -e "s#/usr/local/bin/#$ROOT/bin/#g" \
        -e "s#^EnvironmentFile=.*#EnvironmentFile=$D/orderpipe.env.example#" "$f" > "$V/$(basename "$f")"
  done
  units=(orderpipe.target orderpipe-outbox-relay.service orderpipe-intake@1.service orderpipe-intake@2.service)
  for w in "${WORKERS[@]}"; do units+=("orderpipe-$w@1.service" "orderpipe-$w@4.service"); done
  for u in "${units[@]}"; do
    out=$(cd "$V" && systemd-analyze verify --man=no "./$u" 2>&1)
    rc=$?
    check "systemd-analyze verify $u: exit 0" test $rc = 0
    check "systemd-analyze verify $u: no warning" test -z "$out"
    [ -n "$out" ] && sed 's/^/    /' <<< "$out"
  done
  # The verifier itself catches what the units must not have (so the checks above mean something).
  sed 's/^MemoryMax=/MemoryMaxx=/; s#bin/orderpipe-payment #bin/orderpipe-nonexistent #' \
    "$V/orderpipe-payment@.service" > "$V/orderpipe-broken@.service"
  out=$(cd "$V" && systemd-analyze verify --man=no ./orderpipe-broken@1.service 2>&1)
  check "systemd-analyze verify flags an unknown key and a missing program" \
    grep -q "MemoryMaxx" <<< "$out"
  check "and fails on the missing program" grep -q "orderpipe-nonexistent" <<< "$out"
else
  ok "systemd-analyze is not installed: the grep-based lint above stands in for it"
fi

test_done
