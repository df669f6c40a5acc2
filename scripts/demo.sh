#!/usr/bin/env bash
# The README's first command: the demo on the embedded default (SQLite, local files, the simulator).
# Starts the TI simulator (CM, directory and Konnektor), the web server on 127.0.0.1:8000, a Celery worker and beat.
# Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --demo

unset DATABASE_URL REDIS_URL
export KIMPORTAL_DATA_DIR="${KIMPORTAL_DATA_DIR:-$PWD/var/demo}"
export KIMPORTAL_FETCH_TICK_SECONDS=1
export KIMPORTAL_SERVE_STATIC=1
mkdir -p "$KIMPORTAL_DATA_DIR"
PY=.venv/bin/python
# The simulator keeps its default data directory, so `python -m tisim send ...` works without options.
SIM_DIR="${TISIM_DATA_DIR:-$PWD/var/tisim}"
VZD_DIR="$KIMPORTAL_DATA_DIR/vzd"
LOG_DIR="$KIMPORTAL_DATA_DIR/logs"
mkdir -p "$SIM_DIR" "$VZD_DIR" "$LOG_DIR"

pids=()
konnektor_pid=
cleanup() {
  trap - INT TERM EXIT USR1 USR2
  echo; echo "stopping the demo …"
  local all=("${pids[@]}" $konnektor_pid) alive=() pid
  for pid in "${all[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # One that misses its TERM must not keep Ctrl-C waiting forever: after 20 s it is named and killed.
  for _ in $(seq 1 200); do
    alive=()
    for pid in "${all[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    [ "${#alive[@]}" -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${alive[@]}"; do
    echo "not stopped within 20 s, killed: $(ps -o args= -p "$pid" 2>/dev/null || echo "pid $pid")" >&2
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
# Ctrl-C ends here, not in the "a demo process exited" line after `wait -n` below.
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

wait_for_file() {  # file, seconds, what
  for _ in $(seq 1 "$(( $2 * 10 ))"); do [ -s "$1" ] && return 0; sleep 0.1; done
  echo "timed out waiting for $3 ($1); see $LOG_DIR" >&2; exit 1
}

# The simulator's participants: the hospital's two functional addresses and an outside practice.
if [ ! -f "$SIM_DIR/config.json" ]; then
  cat > "$SIM_DIR/config.json" <<JSON
{"host": "127.0.0.1", "smtp_port": 8465, "pop3_port": 8995, "tls": true, "data_dir": "$SIM_DIR",
 "accounts": [
  {"address": "kardiologie@klinikum-demo.kim.telematik-test", "password": "demo"},
  {"address": "aufnahme@klinikum-demo.kim.telematik-test", "password": "demo"},
  {"address": "praxis.mueller@praxis-mueller.kim.telematik-test", "password": "demo"}
 ]}
JSON
fi

$PY manage.py migrate --noinput >"$LOG_DIR/migrate.log"
$PY manage.py migrate --database channels --noinput >>"$LOG_DIR/migrate.log"

rm -f "$SIM_DIR/cm.json" "$SIM_DIR/konnektor.json" "$SIM_DIR/accountmanager.json" "$VZD_DIR/vzd.json" \
  "$SIM_DIR/vzd.json"
# The demo's SMC-B carries the Telematik-ID of "Klinikum Demo" in the simulated directory: the Account Manager
# publishes the KIM addresses it registers in that entry (docs/accountmanager.md). Written once, like config.json.
if [ ! -f "$SIM_DIR/konnektor-cards.json" ]; then
  $PY - "$SIM_DIR/konnektor-cards.json" <<'PY'
import copy, json, sys
from tisim.konnektor.cli import DEMO_CARDS
from tisim.vzd.generate import KLINIKUM_DEMO_TELEMATIK_ID
cards = copy.deepcopy(DEMO_CARDS)
for card in cards["cards"]:
    if card["type"] == "SMC-B":
        card["telematik_id"] = KLINIKUM_DEMO_TELEMATIK_ID
with open(sys.argv[1], "w", encoding="utf-8") as fh:
    json.dump(cards, fh, indent=2)
PY
fi
[ -f "$SIM_DIR/send.json" ] || echo '{"fachdienst": true}' > "$SIM_DIR/send.json"
$PY -m tisim run --config "$SIM_DIR/config.json" >"$LOG_DIR/tisim.log" 2>&1 & pids+=($!)
# --announce: the Account Manager finds the directory in its data directory's vzd.json.
$PY -m tisim vzd-serve --data-dir "$VZD_DIR" --entries 5000 --announce "$SIM_DIR/vzd.json" \
  >"$LOG_DIR/vzd.log" 2>&1 & pids+=($!)
# The Konnektor with aerztin's eHBA in terminal CT-1; nobody types the PIN but the user (python -m tisim terminal).
# Same data directory as the Clientmodul, so `tisim terminal` and `tisim konnektor-fault` need no options.
# The operations page shows a stopped Konnektor in red: `kill -USR1 <this script>` stops it, `kill -USR2` starts it
# again. The demo itself stops and starts it, so Ctrl-C also ends a restarted one (one started by hand outside the
# demo would outlive it and keep port 8090 from the next `make demo`), and its ending does not end the demo.
start_konnektor() {
  $PY -m tisim konnektor-run --data-dir "$SIM_DIR" --port 8090 >>"$LOG_DIR/konnektor.log" 2>&1 &
  konnektor_pid=$!
}
stop_konnektor() {  # kill -USR1
  if [ -n "$konnektor_pid" ] && kill -TERM "$konnektor_pid" 2>/dev/null; then
    wait "$konnektor_pid" 2>/dev/null || true
  fi
  konnektor_pid=
  echo "the simulated Konnektor is stopped (start it again: kill -USR2 $$)"
}
restart_konnektor() {  # kill -USR2
  if [ -n "$konnektor_pid" ] && kill -0 "$konnektor_pid" 2>/dev/null; then
    echo "the simulated Konnektor is running"
  else
    start_konnektor
    echo "the simulated Konnektor is starting again (see $LOG_DIR/konnektor.log)"
  fi
}
: >"$LOG_DIR/konnektor.log"
start_konnektor
trap stop_konnektor USR1
trap restart_konnektor USR2
wait_for_file "$SIM_DIR/cm.json" 30 "the simulated Clientmodul"
wait_for_file "$SIM_DIR/konnektor.json" 60 "the simulated Konnektor"
wait_for_file "$SIM_DIR/accountmanager.json" 30 "the simulated Account Manager"
wait_for_file "$VZD_DIR/vzd.json" 120 "the simulated directory (slapd)"
json_key() {  # file, key
  $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
export KIMPORTAL_VZD_URL="$(json_key "$VZD_DIR/vzd.json" url)"
# What the web server and the worker need to sign (docs/signing.md): the simulated Konnektor in mode plain, the
# trust for checking its QES signatures, and the Context it knows (Mandant1 / KIMPortal).
export KIMPORTAL_KONNEKTOR_URL="$(json_key "$SIM_DIR/konnektor.json" base_url)"
export KIMPORTAL_KONNEKTOR_MODE=plain
export KIMPORTAL_KONNEKTOR_QES_CA="$(json_key "$SIM_DIR/konnektor.json" qes_ca)"
export KIMPORTAL_KONNEKTOR_MANDANT="$(json_key "$SIM_DIR/konnektor.json" mandant_id)"
export KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM="$(json_key "$SIM_DIR/konnektor.json" client_system_id)"
# KIM administration: the provider's Account Manager (started by `tisim run`; it trusts the SMC-B of the simulated
# Konnektor, which shares the data directory) and the CA of its TLS certificate.
export KIMPORTAL_ACCOUNT_MANAGER_URL="$(json_key "$SIM_DIR/accountmanager.json" base_url)"
export KIMPORTAL_ACCOUNT_MANAGER_CA="$(json_key "$SIM_DIR/accountmanager.json" ca)"

$PY manage.py demo_seed --cm-json "$SIM_DIR/cm.json" --password demo --poll-seconds 5
# The demo's KIM accounts in the simulated Konnektor's context, where the SMC-B signs for the Account Manager.
$PY manage.py kim_demo_seed
# aerztin's eHBA, the workstation Arbeitsplatz-1 (terminal CT-1) and a dozen letters from station to sign.
$PY manage.py signing_demo_seed
# The KIS's connection for Kardiologie with a fresh random token (docs/kis-api.md; scripts/kis_client.py reads it).
$PY manage.py kis_demo_client --token-file "$KIMPORTAL_DATA_DIR/kis-token"

.venv/bin/celery -A kimportal worker --loglevel=WARNING --concurrency=2 >"$LOG_DIR/worker.log" 2>&1 & pids+=($!)
.venv/bin/celery -A kimportal beat --loglevel=WARNING >"$LOG_DIR/beat.log" 2>&1 & pids+=($!)
# The production server (gunicorn managing uvicorn workers, deploy/gunicorn.conf.py); one worker on the
# embedded SQLite default, as many as cores on PostgreSQL (KIMPORTAL_WEB_WORKERS).
KIMPORTAL_BIND=127.0.0.1:8000 KIMPORTAL_WEB_WORKERS="${KIMPORTAL_WEB_WORKERS:-1}" \
  .venv/bin/gunicorn -c deploy/gunicorn.conf.py kimportal.asgi:application >"$LOG_DIR/web.log" 2>&1 & pids+=($!)

# A letter to send with `tisim send --sign --attach var/demo/brief.pdf` (README), as in the seed mail below.
[ -f "$KIMPORTAL_DATA_DIR/brief.pdf" ] || $PY -c 'import sys; sys.path.insert(0, "scripts")
from demo_mails import tiny_pdf
open(sys.argv[1], "wb").write(tiny_pdf("Arztbrief - Praxis Dr. Mueller - Befund"))' "$KIMPORTAL_DATA_DIR/brief.pdf"
# Seed mail travels the real path: tisim send → SMTP → CM maildrop → POP3 → portal.
if [ ! -f "$KIMPORTAL_DATA_DIR/.demo-mails-sent" ]; then
  $PY scripts/demo_mails.py --data-dir "$SIM_DIR" && touch "$KIMPORTAL_DATA_DIR/.demo-mails-sent"
fi

cat <<TXT

  KIM Portal demo is running:  http://127.0.0.1:8000/
  Users: station / demo · aerztin / demo · assistenz / demo (resident) · leitung / demo (administration) · admin / demo (IT)
  Operations: log in as admin, "Betrieb" — every component green. Stop the simulated Konnektor and within
  a minute it turns red there, and http://127.0.0.1:8000/health/ answers 503 naming "konnektor":
    kill -USR1 $$
  (start it again: kill -USR2 $$)
  Send a mail from the outside practice (add --sign --attach $KIMPORTAL_DATA_DIR/brief.pdf for a letter
  with the practice physician's QES: "QES von Dr. med. Klaus Müller — gültig" on its page):
    .venv/bin/python -m tisim send \\
      --from praxis.mueller@praxis-mueller.kim.telematik-test \\
      --to kardiologie@klinikum-demo.kim.telematik-test --subject "Befund"
  Sign letters: log in as aerztin, "Signatur", select all, choose the Arbeitsplatz "Station 3,
  Arztzimmer · CT-1", "Auswahl signieren", then type the PIN at the simulated card terminal
  (once for the PDFs, once more for the text and XML letters; or use $KIMPORTAL_KONNEKTOR_URL/tisim/terminal):
    .venv/bin/python -m tisim terminal --pin 123456
  Out-of-office note: log in as leitung, "KIM-Konten", Aufnahme, "Abwesenheitsnotiz bearbeiten"; then a mail
  from Praxis Müller to aufnahme@klinikum-demo.kim.telematik-test gets the automatic reply (tisim send as above,
  --to aufnahme@…; the reply lies in $SIM_DIR/maildrops/praxis.mueller@praxis-mueller.kim.telematik-test/).
  Drafts from the KIS: post three eArztbriefe (author assistenz, signer aerztin; "in Prüfung" for aerztin):
    .venv/bin/python scripts/kis_client.py --token-file "$KIMPORTAL_DATA_DIR/kis-token" submit --demo
  A registration code for a new KIM address (the provider's letter; for "Neue KIM-Adresse registrieren"):
    .venv/bin/python -m tisim accountmanager reg-code --address neu@klinikum-demo.kim.telematik-test
  Logs: $LOG_DIR   ·   Ctrl-C stops everything.
TXT
# Any process but the Konnektor ending ends the demo (the Konnektor may be stopped to watch the operations page).
# A trap (USR1/USR2 above) also ends `wait -n`, with a status above 128: then wait again.
while :; do
  status=0
  wait -n "${pids[@]}" || status=$?
  running=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=$((running + 1)); done
  [ "$status" -gt 128 ] && [ "$running" -eq "${#pids[@]}" ] || break
done
echo "a demo process exited; see $LOG_DIR" >&2
