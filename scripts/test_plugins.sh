#!/usr/bin/env bash
# Install every example plugin package under plugins/ into the given environment and run its tests.
set -euo pipefail
python="${1:-python}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shopt -s nullglob
packages=("$root"/plugins/*/pyproject.toml)
if [ ${#packages[@]} -eq 0 ]; then
  echo "no plugin packages under plugins/"
  exit 0
fi
for pyproject in "${packages[@]}"; do
  package="$(dirname "$pyproject")"
  echo "== $(basename "$package")"
  "$python" -m uv pip install --quiet --python "$python" -e "$package"
  (cd "$package" && "$python" -m pytest -q -p no:cacheprovider tests)
done
