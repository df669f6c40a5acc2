#!/usr/bin/env bash
# Back up the KIM Portal: the PostgreSQL database (pg_dump, custom format) and the blob store (the mail
# itself: raw messages and attachments, one file per SHA-256). docs/deploy.md, "Backup and restore".
#
#   set -a; . /etc/kimportal/kimportal.env; set +a
#   deploy/backup.sh /var/backups/kimportal
#
# Reads DATABASE_URL and KIMPORTAL_BLOB_DIR (default: $KIMPORTAL_DATA_DIR/blobs) like the services do.
# Writes DEST/kimportal-<UTC time>/ with database.dump, blobs/, migrations.txt and SHA256SUMS, points
# DEST/latest at it, and keeps the newest KIMPORTAL_BACKUP_KEEP sets (default 14). Blobs never change
# once written, so a set hard-links the blobs it shares with the previous set: each set is complete on
# its own, and only new mail takes space. Prints the new set's path.
set -euo pipefail
umask 077 # patient data

die() { echo "backup.sh: $*" >&2; exit 1; }

dest=${1:-}
[ -n "$dest" ] || die "usage: backup.sh DEST_DIR"
[ -n "${DATABASE_URL:-}" ] || die "DATABASE_URL is not set"
case "$DATABASE_URL" in
  postgres://* | postgresql://*) ;;
  *) die "DATABASE_URL must be a postgres:// URL" ;;
esac
blobs=${KIMPORTAL_BLOB_DIR:-${KIMPORTAL_DATA_DIR:-}/blobs}
[ -d "$blobs" ] || die "blob directory $blobs does not exist (KIMPORTAL_BLOB_DIR / KIMPORTAL_DATA_DIR)"
keep=${KIMPORTAL_BACKUP_KEEP:-14}
command -v rsync >/dev/null || die "rsync is needed (apt-get install rsync)"

mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
name="kimportal-$(date -u +%Y%m%dT%H%M%S.%3NZ)"
set_dir="$dest/$name"
work="$dest/.$name.partial"
[ ! -e "$set_dir" ] || die "$set_dir exists already"
rm -rf -- "$work"
mkdir "$work"

# 1. The database first. Ingest writes a message's blobs before its row commits, and nothing deletes
#    blobs, so every blob a dumped row names is already on disk when step 2 copies the directory.
#    pg_dump reads one consistent snapshot while the portal keeps running.
pg_dump --format=custom --dbname="$DATABASE_URL" --file="$work/database.dump"
psql "$DATABASE_URL" -XAtqc "SELECT app || '.' || name FROM django_migrations ORDER BY id" >"$work/migrations.txt"

# 2. The blobs. In-flight temp files (.tmp-*) are not blobs yet; unchanged blobs are hard links.
link=()
if [ -d "$dest/latest/blobs" ]; then link=(--link-dest="$(cd "$dest/latest/blobs" && pwd)"); fi
rsync -a --exclude='.tmp-*' "${link[@]}" "$blobs/" "$work/blobs/"

(cd "$work" && sha256sum database.dump migrations.txt >SHA256SUMS)
sync -f "$work"
mv -- "$work" "$set_dir"
ln -sfn -- "$name" "$dest/latest"

# 3. Retention: the oldest complete sets beyond KIMPORTAL_BACKUP_KEEP go.
mapfile -t sets < <(find "$dest" -mindepth 1 -maxdepth 1 -type d -name 'kimportal-*Z' | sort)
excess=$((${#sets[@]} - keep))
for ((i = 0; i < excess; i++)); do rm -rf -- "${sets[i]}"; done

echo "$set_dir"
