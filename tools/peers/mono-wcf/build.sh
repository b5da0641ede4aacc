#!/usr/bin/env bash
# Installs Mono (Debian packages) if missing, then compiles the CreditCheck service and client.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v mcs >/dev/null 2>&1 || [ ! -e /usr/lib/mono/4.5/System.ServiceModel.dll ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends \
        mono-devel libmono-system-servicemodel4.0a-cil
fi
mkdir -p bin
REFS="-r:System.ServiceModel -r:System.Runtime.Serialization -r:System.Core"
# Compile into bin/.tmp/ and rename into bin/: a service still running from bin/ keeps the file
# it mapped instead of seeing it rewritten underneath it (same file names, so same assembly names).
mkdir -p bin/.tmp
mcs -nologo -optimize+ -out:bin/.tmp/CreditCheckService.exe $REFS src/Contracts.cs src/Bindings.cs src/Service.cs
mcs -nologo -optimize+ -out:bin/.tmp/CreditCheckClient.exe  $REFS src/Contracts.cs src/Bindings.cs src/Client.cs
mcs -nologo -optimize+ -out:bin/.tmp/OnewaySender.exe $REFS src/OnewaySender.cs
mv -f bin/.tmp/CreditCheckService.exe bin/.tmp/CreditCheckClient.exe bin/.tmp/OnewaySender.exe bin/
rmdir bin/.tmp
# Optional timing-fixed copy of System.ServiceModel.dll (used when MONO_WCF_NOSLEEP=1).
python3 tools/patch_mono_sleep.py bin/nosleep >/dev/null || echo "warning: could not build bin/nosleep (see tools/patch_mono_sleep.py)" >&2
echo "built: bin/CreditCheckService.exe bin/CreditCheckClient.exe bin/OnewaySender.exe bin/nosleep/System.ServiceModel.dll"
