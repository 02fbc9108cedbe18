#!/usr/bin/env bash
# Builds the Python policy (app.py) into a component with componentize-py,
# installed from PyPI into a private venv. Prints the component's path.
#
#   plugins/python/build.sh [OUT_DIR]
#
# OUT_DIR defaults to $CARGO_TARGET_DIR/python-policy (or target/...).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-${CARGO_TARGET_DIR:-$root/target}/python-policy}"
mkdir -p "$out"
# Pinned: the generated bindings' API (wit_world, componentize_py_types)
# changes between releases.
version=0.25.1
venv="$out/venv"
if [ ! -x "$venv/bin/componentize-py" ] || ! "$venv/bin/componentize-py" --version | grep -q "$version"; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet "componentize-py==$version" >&2
fi
cd "$here"
"$venv/bin/componentize-py" -d "$root/wit" -w ipam-policy-tools componentize app -o "$out/policy_python.wasm" >&2
echo "$out/policy_python.wasm"
