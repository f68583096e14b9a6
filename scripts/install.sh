#!/usr/bin/env bash
# Install paraeval and its development tools into a virtual environment (default: .venv).
#
#   bash scripts/install.sh            # creates .venv, installs paraeval[dev] + torchattacks
#   PARAEVAL_VENV=/path bash scripts/install.sh
#
# Why this script rather than `pip install -e .`:
#   * torch must be the local CPU wheel (constraints.txt pins torch==2.13.0); an unpinned
#     torch resolves to a multi-GB CUDA build on these machines.
#   * torchattacks declares torchvision (CUDA-only here, breaks at import) and an old
#     `requests` pin, yet imports neither, so it is installed with --no-deps.
#   * uv is ~8x faster than pip but ignores pip's configuration, so the local wheel
#     directory (pip's find-links) and the constraints file are passed explicitly.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${PARAEVAL_VENV:-$root/.venv}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

find_links="${PIP_FIND_LINKS:-$(pip config get global.find-links 2>/dev/null || true)}"
find_links_args=()
for dir in $find_links; do find_links_args+=(--find-links "$dir"); done

if ! command -v uv >/dev/null 2>&1; then
  "$python" -m pip install --quiet uv
fi
uv="$(command -v uv || echo "$python -m uv")"

# --seed: pip in the venv, so the README's `pip install` lines (extras, plugins) work as written.
$uv venv --quiet --allow-existing --seed --python "$python" "$venv"
# --compile-bytecode: where Python may not write bytecode (PYTHONDONTWRITEBYTECODE=1, common in
# containers) every start would otherwise recompile what it imports (paraeval --help: 11 s).
$uv pip install --quiet --compile-bytecode --python "$venv/bin/python" \
  -c "$root/constraints.txt" "${find_links_args[@]}" -e "$root[dev]"
$uv pip install --quiet --compile-bytecode --python "$venv/bin/python" \
  -c "$root/constraints.txt" "${find_links_args[@]}" --no-deps "torchattacks==3.5.1"
# uv compiles only when it installs something: a venv made earlier, or by a run that was
# stopped, keeps its uncompiled modules (measured: a 4-cell run 15 s instead of 11 s, every
# worker process recompiling torch's and ART's imports). So compile what is missing (~3 s when
# nothing is; a few files written for newer Pythons fail to compile and are skipped).
site_packages="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$venv/bin/python" -m compileall -q -j 0 "$site_packages" >/dev/null 2>&1 || true
"$venv/bin/python" -m compileall -q "$root/paraeval"  # the editable source itself
"$venv/bin/python" -c "import torch, art, torchattacks, paraeval; print('paraeval', paraeval.__version__, '| torch', torch.__version__, '| ART', art.__version__, '| torchattacks', torchattacks.__version__)"
echo "Installed into $venv. Activate with: source $venv/bin/activate"
