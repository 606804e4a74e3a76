#!/usr/bin/env bash
# Create .venv and install everything the project needs: the Python packages (pyproject.toml)
# and, where apt-get is available and they are missing, the Debian tools the tests use.
# Idempotent: make calls it only when pyproject.toml or this script changed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
python=${PYTHON:-python3}

log() { printf 'bootstrap: %s\n' "$*" >&2; }

install_debian_tools() {
  # promtool/prometheus, amtool/alertmanager (observability tests), libb64 (perf_analyzer).
  local wanted=() missing=()
  command -v promtool >/dev/null 2>&1 || wanted+=(prometheus)
  command -v amtool >/dev/null 2>&1 || wanted+=(prometheus-alertmanager)
  ldconfig -p 2>/dev/null | grep -q libb64.so.0d || wanted+=(libb64-0d)
  [ ${#wanted[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    log "apt-get not available; install ${wanted[*]} yourself (tests that need them skip)"
    return 0
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  log "installing Debian packages: ${wanted[*]}"
  if ! $sudo apt-get update -qq >/dev/null || \
     ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null; then
    missing=("${wanted[@]}")
    log "could not install ${missing[*]} (no root?); tests that need them skip"
  fi
}

install_perf_analyzer() {
  # PyPI's perf-analyzer is a placeholder; the real binary ships inside tritonclient 2.41's wheel.
  local target="$venv/libexec/perf_analyzer" scratch
  [ -x "$target" ] && return 0
  scratch=$(mktemp -d)
  log "installing perf_analyzer (from the tritonclient 2.41.0 wheel)"
  if "$venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps tritonclient==2.41.0 -d "$scratch" 2>&1 | grep -v "^WARNING: Location"; then :; fi
  "$venv/bin/python" - "$scratch" "$target" <<'PY' || log "perf_analyzer could not be installed; the serving benchmark will say so"
import glob, os, sys, zipfile
scratch, target = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(scratch, "tritonclient-2.41.0-*.whl"))[0])
member = next(name for name in wheel.namelist() if name.endswith("/bin/perf_analyzer"))
os.makedirs(os.path.dirname(target), exist_ok=True)
with wheel.open(member) as source, open(target + ".part", "wb") as sink:
    sink.write(source.read())
os.chmod(target + ".part", 0o755)
os.replace(target + ".part", target)
PY
  rm -rf "$scratch"
}

if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade "pip>=24" 2>&1 | grep -v "^WARNING: Location" || true
log "installing tritonops and its dependencies"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e "${root}[dev]" 2>&1 | grep -v "^WARNING: Location" || true
"$venv/bin/python" -c "import tritonops, helm_python, kubernetes_validate" \
  || { log "the Python install failed"; exit 1; }
install_debian_tools
install_perf_analyzer
log "ready"
