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
  # One listing of the plugin modules and their distributions (each `paraeval list` starts
  # Python and torch, ~2 s): every module the package registers must have loaded.
  plugins() { "$python" -m paraeval list plugins --format csv; }
  rows="$(plugins | grep -F ",$name " || true)"
  if [[ -z "$rows" ]]; then
    echo "error: $name is installed but paraeval lists no plugin from it" >&2
    exit 1
  fi
  if grep -qv ',loaded$' <<<"$rows"; then
    echo "error: a plugin of $name did not load:" >&2
    echo "$rows" >&2
    exit 1
  fi
  "$python" -m uv pip uninstall --quiet --python "$python" "$name"
  if [[ "$(plugins)" == *",$name "* ]]; then
    echo "error: $name was uninstalled but paraeval still lists it" >&2
    exit 1
  fi
  echo "$name: listed while installed, gone once uninstalled"
done
