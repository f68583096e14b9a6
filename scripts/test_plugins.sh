#!/usr/bin/env bash
# Install every plugin package under plugins/ into the given environment, run its tests, then
# uninstall it and check that paraeval no longer lists anything from it.
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
  name="$("$python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["name"])' "$pyproject")"
  echo "== $name"
  "$python" -m uv pip install --quiet --python "$python" -e "$package"
  (cd "$package" && "$python" -m pytest -q -p no:cacheprovider tests)
  listed() {
    for what in defenses attacks victims datasets; do "$python" -m paraeval list "$what" --format csv; done
  }
  if [[ "$(listed)" != *"$name"* ]]; then
    echo "error: $name is installed but paraeval lists nothing from it" >&2
    exit 1
  fi
  "$python" -m uv pip uninstall --quiet --python "$python" "$name"
  if [[ "$(listed)" == *"$name"* ]]; then
    echo "error: $name was uninstalled but paraeval still lists it" >&2
    exit 1
  fi
  echo "$name: listed while installed, gone once uninstalled"
done
