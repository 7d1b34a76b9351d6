#!/usr/bin/env bash
# cargo-deny over the workspace's Cargo.lock, configured by deny.toml:
# licenses, bans (duplicate versions warn, wildcards), sources (crates.io
# only) and, where the RustSec advisory database can be fetched, advisories
# (vulnerabilities, unmaintained, unsound, yanked). Run from the repo root,
# after the toolchain named in rust-toolchain.toml is known to rustup
# (.ci/run links it first).
#
# ADVISORIES: cargo-deny reads the RustSec advisory database from a git clone
# of https://github.com/RustSec/advisory-db. This project's machines (the
# developers' and CI's) reach only the crates.io, PyPI, npm and Debian
# package registries, not GitHub, and no registry package ships a copy of the
# database (none on crates.io, PyPI, npm or Debian; none on disk). So here the
# advisories check CANNOT run: known vulnerabilities, unmaintained and unsound
# crates are NOT checked, and the log says so ("advisories: NOT CHECKED").
# cargo-deny's --offline would only reuse a clone that is already there (and
# at most 90 days old); there is none to reuse, so it is not used. Of what
# the advisories check covers, only "yanked" can be done without the
# database: the fallback below asks the crates.io index about every
# crates.io package in Cargo.lock. On a machine that reaches GitHub, the full
# `cargo deny check` runs instead, advisories included.
# DENY_REQUIRE_ADVISORIES=1 makes a database that cannot be fetched a
# failure instead of a notice.
set -euo pipefail

if [ ! -f deny.toml ] || [ ! -f Cargo.lock ]; then
  echo "deny.sh: run from the repo root (deny.toml and Cargo.lock not found)" >&2
  exit 1
fi

deny_version=0.20.2
tools=/var/tmp/stepgate-tools
export PATH="$tools/bin:$PATH"

if [ "$(cargo-deny --version 2>/dev/null || true)" != "cargo-deny $deny_version" ]; then
  # About 2 minutes on 2 cores (115 s measured, downloads included).
  echo "== installing cargo-deny $deny_version into $tools"
  # From / so that the repo's rust-toolchain.toml does not choose the toolchain.
  (cd / && CARGO_TARGET_DIR=/var/tmp/cargo-deny-build \
    cargo install cargo-deny --version "$deny_version" --locked --root "$tools")
fi

# --locked: read Cargo.lock as it is, never update it.
# --workspace: every workspace member (stepgate, migrations) is a root.
deny=(cargo deny --locked --workspace --color never)
db_url=https://github.com/RustSec/advisory-db

if timeout 60 git ls-remote --exit-code "$db_url" HEAD >/dev/null 2>&1; then
  echo "== cargo deny check (advisories, bans, licenses, sources)"
  "${deny[@]}" check --hide-inclusion-graph --show-stats
  exit 0
fi

echo "== advisories: NOT CHECKED: the RustSec advisory database ($db_url) cannot be fetched from this machine"
if [ "${DENY_REQUIRE_ADVISORIES:-0}" = 1 ]; then
  echo "FAIL: DENY_REQUIRE_ADVISORIES=1 and there is no advisory database" >&2
  exit 1
fi

echo "== cargo deny check bans licenses sources"
"${deny[@]}" check --hide-inclusion-graph --show-stats bans licenses sources

echo "== yanked crates (crates.io index; the one part of the advisories check that needs no database)"
python3 - <<'PY'
import json, sys, time, tomllib, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor

CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"
with open("Cargo.lock", "rb") as f:
    lock = tomllib.load(f)
locked = {}
for p in lock.get("package", []):
    if p.get("source") == CRATES_IO:
        locked.setdefault(p["name"], set()).add(p["version"])

def index_url(name):
    n = name.lower()
    path = f"{len(n)}/{n}" if len(n) <= 2 else f"3/{n[0]}/{n}" if len(n) == 3 else f"{n[:2]}/{n[2:4]}/{n}"
    return "https://index.crates.io/" + path

def check(name):
    """(name, version, state) per locked version: yanked True/False, None if not in the index."""
    req = urllib.request.Request(index_url(name), headers={"User-Agent": "stepgate-ci (yanked check)"})
    for attempt in range(4):
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                body = r.read().decode()
            break
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return [(name, v, None) for v in locked[name]]
            if attempt == 3:
                raise
        except OSError:
            if attempt == 3:
                raise
        time.sleep(2 ** attempt)
    states = {}
    for line in body.splitlines():
        if line and any(f'"{v}"' in line for v in locked[name]):
            entry = json.loads(line)
            states[entry["vers"]] = bool(entry.get("yanked", False))
    return [(name, v, states.get(v)) for v in locked[name]]

with ThreadPoolExecutor(8) as ex:
    results = [r for rs in ex.map(check, sorted(locked)) for r in rs]
bad = sorted((n, v, s) for n, v, s in results if s is not False)
for name, vers, state in bad:
    print(f"error: {name} {vers} " + ("is yanked from crates.io" if state else "is not in the crates.io index"), file=sys.stderr)
print(f"yanked: {len(results)} crates.io packages in Cargo.lock checked, {len(bad)} yanked or missing")
sys.exit(1 if bad else 0)
PY

echo "cargo-deny: bans, licenses, sources and yanked passed; advisories NOT CHECKED (no advisory database here)"
