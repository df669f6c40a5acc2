#!/usr/bin/env bash
# Installs what the portal needs on a fresh Debian machine: Python packages in .venv,
# and (when asked) Debian's Chromium and OpenLDAP slapd for browser and directory tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# --system: everything the tests need (Chromium, slapd); --demo: only slapd for the directory.
want_system=0
want_browser=0
for arg in "$@"; do
  [ "$arg" = "--system" ] && want_system=1 && want_browser=1
  [ "$arg" = "--demo" ] && want_system=1
done

if [ "$want_system" = 1 ]; then
  missing=()
  if [ "$want_browser" = 1 ]; then [ -x /usr/bin/chromium ] || missing+=(chromium); fi
  if [ "$want_browser" = 1 ]; then [ -x /usr/sbin/nginx ] || missing+=(nginx); fi
  [ -x /usr/sbin/slapd ] || missing+=(slapd)
  command -v ldapsearch >/dev/null 2>&1 || missing+=(ldap-utils)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# python-ldap (sign-in against the hospital's directory) compiles against OpenLDAP's and SASL's headers.
if [ ! -f /usr/include/ldap.h ] || [ ! -f /usr/include/sasl/sasl.h ]; then
  echo "installing Debian packages: libldap-dev libsasl2-dev (for python-ldap)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libldap-dev libsasl2-dev gcc >/dev/null
fi

python_bin="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  echo "$want" > "$stamp"
fi
