#!/usr/bin/env bash
# Usage: run-client.sh HOST PORT N [--variant tcp|http|streamed|duplex|portsharing|reliable]
#          [--op check|ping|audit|statement|profile|mixed|stream|fault] [--lines L] [--bytes B]
#          [--concurrency C] [--warmup W] [--new-channel] [--quiet]
#          [--via HOST:PORT [--via-path PATH]] [--to URI]
# Failures print one line `ERROR <exception type>: <message>` and exit 1.
# PORT is the service's base port (same number given to run-service.sh).
set -euo pipefail
D="$(dirname "$0")"
[ $# -ge 3 ] || { echo "usage: $0 HOST PORT N [options]" >&2; exit 2; }
[ -e "$D/bin/CreditCheckClient.exe" ] || "$D/build.sh"
# MONO_WCF_NOSLEEP=1: use the copy of System.ServiceModel.dll without Mono's fixed 50 ms
# per-message receive sleep (see tools/patch_mono_sleep.py and NOTES.md).
if [ "${MONO_WCF_NOSLEEP:-0}" = "1" ]; then
    [ -e "$D/bin/nosleep/System.ServiceModel.dll" ] || python3 "$D/tools/patch_mono_sleep.py" "$D/bin/nosleep"
    export MONO_PATH="$D/bin/nosleep${MONO_PATH:+:$MONO_PATH}"
fi
exec mono "$D/bin/CreditCheckClient.exe" "$@"
