#!/usr/bin/env bash
# Restore a backup set written by deploy/backup.sh into a NEW database and an EMPTY blob directory.
# docs/deploy.md, "Backup and restore".
#
#   DATABASE_URL=postgres://kimportal@db.klinikum.local/kimportal_restored \
#   KIMPORTAL_BLOB_DIR=/var/lib/kimportal-restored/blobs \
#   deploy/restore.sh /var/backups/kimportal/latest
#
# Checks the set first (the dump's checksum, every blob against its SHA-256 name), then creates the
# database (or uses an existing empty one), restores it in one transaction and copies the blobs. It never
# writes into a database that has tables or a blob directory that has files: point the services at the
# restored ones afterwards (and run `manage.py migrate --check` there) instead of restoring over live data.
set -euo pipefail

die() { echo "restore.sh: $*" >&2; exit 1; }

set_dir=${1:-}
[ -n "$set_dir" ] || die "usage: restore.sh BACKUP_SET_DIR"
[ -f "$set_dir/database.dump" ] || die "$set_dir has no database.dump"
[ -n "${DATABASE_URL:-}" ] || die "DATABASE_URL (the database to restore into) is not set"
case "$DATABASE_URL" in
  postgres://* | postgresql://*) ;;
  *) die "DATABASE_URL must be a postgres:// URL" ;;
esac
blobs=${KIMPORTAL_BLOB_DIR:-${KIMPORTAL_DATA_DIR:-}/blobs}
[ "$blobs" != "/blobs" ] || die "KIMPORTAL_BLOB_DIR (or KIMPORTAL_DATA_DIR) is not set"

# 1. Is the set intact? A blob is named by the SHA-256 of its bytes, so the set checks itself.
(cd "$set_dir" && sha256sum --quiet --check SHA256SUMS) || die "database.dump or migrations.txt is damaged"
bad=$(find "$set_dir/blobs" -type f -print0 | xargs -0 -r sha256sum | awk '{ n = $2; sub(/.*\//, "", n); if (n != $1) print $2 }')
[ -z "$bad" ] || die "blobs whose bytes do not match their name:"$'\n'"$bad"

# 2. Targets must be new: a restore never mixes with live data.
if [ -d "$blobs" ] && [ -n "$(ls -A "$blobs")" ]; then die "blob directory $blobs is not empty"; fi
base=${DATABASE_URL%%\?*}
dbname=${base##*/}
query=${DATABASE_URL#"$base"}
maintenance="${base%/*}/postgres$query"
exists=$(psql "$maintenance" -XAtq -v name="$dbname" <<<"SELECT 1 FROM pg_database WHERE datname = :'name';")
if [ -z "$exists" ]; then
  psql "$maintenance" -XAtq -v ON_ERROR_STOP=1 -v name="$dbname" <<<'CREATE DATABASE :"name";'
fi
tables=$(psql "$DATABASE_URL" -XAtqc "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')")
[ "$tables" = 0 ] || die "database $dbname already has tables"

# 3. The database, all or nothing; its objects belong to the user in DATABASE_URL (the portal's role).
pg_restore --exit-on-error --single-transaction --no-owner --no-privileges --dbname="$DATABASE_URL" "$set_dir/database.dump"

# 4. The blobs, flushed to disk before anyone relies on them.
mkdir -p "$blobs"
cp -a -- "$set_dir/blobs/." "$blobs/"
sync -f "$blobs"

echo "restored $set_dir into database $dbname and $blobs"
echo "next: manage.py migrate --check against it, then point the services at it (docs/deploy.md)"
