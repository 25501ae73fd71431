#!/usr/bin/env bash
# Set up everything sdeilab needs on a Debian machine with Python 3.11:
# Debian packages (scripts/setup-debian.sh), then a virtualenv in .venv with the project
# installed from pyproject.toml (editable, with the lab and test extras).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[lab,test]"
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
