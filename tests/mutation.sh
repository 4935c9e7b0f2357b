#!/usr/bin/env bash
# Mutation testing: do the tests fail when the code is wrong? (docs/testing.md)
# Mutates the core, the privacy and naming rules and the node pipeline's pure parts
# ([tool.mutmut] in pyproject.toml) and runs the fast in-process tests against each mutant.
# Usage: ./tests/mutation.sh            (then: .venv/bin/mutmut show <name> for a survivor)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,mutation]'
rm -rf mutants
.venv/bin/mutmut run --max-children "$(nproc)" >/dev/null || true
.venv/bin/mutmut results | awk '{print $NF}' | sort | uniq -c
.venv/bin/mutmut results | grep -v ": killed" || true
