#!/usr/bin/env bash
# Prepares the independent oracles for the NBFX codec tests (tests/oracle/xcheck.py):
#   .venv/        python-wcfbin (PyPI `wcf`, pinned with hashes in requirements.txt)
#   bin/*.exe     our Mono tools, compiled with mcs against Mono's System.Runtime.Serialization
#                 (the .NET reference-source XmlDictionaryReader/XmlBinaryWriter)
# Does nothing when everything is already there and up to date. Both folders are gitignored.
# Needs: python3 with venv, mono + mcs (Debian: mono-mcs, mono-runtime, libmono-system-runtime-serialization4.0-cil).
set -euo pipefail
cd "$(dirname "$0")"

# python-wcfbin: install only when the venv lacks it or requirements.txt changed.
if [[ ! -x .venv/bin/python ]] || ! cmp -s requirements.txt .venv/.requirements-stamp; then
  echo "oracles: creating .venv with python-wcfbin (requirements.txt)" >&2
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
    --only-binary :all: -r requirements.txt
  cp requirements.txt .venv/.requirements-stamp
fi

# Mono tools: compile when the .exe is missing or older than its source.
command -v mcs >/dev/null 2>&1 || { echo "oracles: mcs (Mono C# compiler) not found" >&2; exit 1; }
mkdir -p bin
for src in *.cs; do
  exe=bin/${src%.cs}.exe
  if [[ ! -f $exe || $src -nt $exe ]]; then
    echo "oracles: compiling $src" >&2
    mcs -nologo -warn:0 -optimize+ -r:System.Runtime.Serialization -r:System.Xml "$src" -out:"$exe.tmp"
    mv "$exe.tmp" "$exe"
  fi
done
