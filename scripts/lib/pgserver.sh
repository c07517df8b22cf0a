# PostgreSQL server-side helpers for scripts/backup and scripts/restore (sourced): the user a
# server runs as, and directories that user can reach. Expects PG_BIN and die() from the caller.

# The user a server started from here runs as: PostgreSQL refuses root, so as root it is
# `postgres` (or `nobody`), as anyone else that user (scripts/dev-stack makes the same choice).
pgserver_user() {
  if [ "$(id -u)" -ne 0 ]; then id -un; return; fi
  if id postgres >/dev/null 2>&1; then echo postgres; else echo nobody; fi
}

pgserver_as() { # USER command...: run as USER (root only switches user; anyone else is USER)
  local u=$1; shift
  if [ "$(id -u)" -eq 0 ] && [ "$u" != root ]; then runuser -u "$u" -- "$@"; else "$@"; fi
}

# pgserver_dir DIR USER KIND: makes DIR (absent or empty) a 0700 directory owned by USER that USER
# can reach. As root, a DIR under a directory USER cannot traverse (a 0700 home or test directory)
# becomes a symbolic link to a private directory under /var/tmp (/var/tmp/orderpipe-KIND.XXXXXX),
# as scripts/dev-stack does for its data directory. Prints the directory's real path.
pgserver_dir() {
  local dir=$1 u=$2 kind=$3 real
  mkdir -p "$(dirname "$dir")"
  if [ -L "$dir" ] || [ -d "$dir" ]; then
    real=$(readlink -f "$dir")
  elif [ "$(id -u)" -eq 0 ] && [ "$u" != root ] && ! runuser -u "$u" -- test -x "$(dirname "$dir")" 2>/dev/null; then
    real=$(mktemp -d "/var/tmp/orderpipe-$kind.XXXXXX")/$(basename "$dir")
    chmod 0711 "$(dirname "$real")"
    mkdir -p "$real"
    ln -s "$real" "$dir"
  else
    mkdir -p "$dir"
    real=$(readlink -f "$dir")
  fi
  [ "$(id -u)" -ne 0 ] || chown "$u" "$real"
  chmod 0700 "$real"
  pgserver_as "$u" test -w "$real" -a -x "$real" || die "$u cannot write $real (choose a directory it can reach)"
  echo "$real"
}

# pgserver_remove_dir DIR: removes DIR, and the private /var/tmp directory it links to, if any.
pgserver_remove_dir() {
  local real
  if [ -L "$1" ]; then
    real=$(readlink -f "$1")
    case "$real" in /var/tmp/orderpipe-*.*/*) rm -rf "$(dirname "$real")" ;; esac
  fi
  rm -rf "$1"
}

# pgserver_free_port FROM: the first port from FROM on that nothing listens on.
pgserver_free_port() {
  local p=$1 used
  used=$(ss -Hltn 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)
  while grep -qx "$p" <<< "$used"; do p=$((p + 1)); done
  echo "$p"
}

# pgserver_extract ARCHIVE DIR: unpacks a pg_basebackup tar (plain, .gz, .lz4 or .zst) into DIR.
pgserver_extract() {
  case "$1" in
    *.tar.gz) tar -xzf "$1" -C "$2" ;;
    *.tar.lz4) tar -I lz4 -xf "$1" -C "$2" ;;
    *.tar.zst) tar -I zstd -xf "$1" -C "$2" ;;
    *.tar) tar -xf "$1" -C "$2" ;;
    *) die "unknown archive format: $1" ;;
  esac
}

# pgserver_unpack BACKUP DIR: a base backup made by scripts/backup unpacked into DIR (pg_wal
# included) and checked against its manifest with pg_verifybackup (checksums of every file, and
# the backup's WAL parsed through its end). Returns pg_verifybackup's status.
pgserver_unpack() {
  local b=$1 dir=$2 f
  f=$(ls "$b"/base.tar* 2>/dev/null | head -1)
  [ -n "$f" ] || die "no base.tar* in $b"
  pgserver_extract "$f" "$dir" || return 1
  mkdir -p "$dir/pg_wal"
  f=$(ls "$b"/pg_wal.tar* 2>/dev/null | head -1)
  [ -z "$f" ] || pgserver_extract "$f" "$dir/pg_wal" || return 1
  "$PG_BIN/pg_verifybackup" -q -m "$b/backup_manifest" "$dir"
}
