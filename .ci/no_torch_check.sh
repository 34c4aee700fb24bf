#!/usr/bin/env bash
# The base install, without torch: `pip install .` into a fresh virtualenv
# reads ONNX and safetensors, and refuses a PyTorch file with one line that
# names the extra. Runs in a temporary folder; the working tree is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
PY=${PY:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "no-torch check: $*" >&2; exit 1; }

# Build from a copy of the tracked and new files: an in-tree build leaves
# build/lib behind, whose stale modules would ship in the next wheel.
mkdir "$tmp/src"
git ls-files -z --cached --others --exclude-standard -- pyproject.toml README.md LICENSE sharescan \
  | xargs -0 cp --parents -t "$tmp/src"

"$PY" -m venv "$tmp/venv"
bin=$tmp/venv/bin
"$bin/pip" install --quiet "$tmp/src"

cd "$tmp"  # nothing from the working tree on sys.path
if "$bin/python" -c "import torch" 2>/dev/null; then
  fail "torch is importable after a plain 'pip install .'; it belongs to the [torch] extra"
fi
"$bin/python" - <<'PY' || fail "the installed package lacks py.typed or its license file"
from importlib import metadata, resources
assert resources.files("sharescan").joinpath("py.typed").is_file(), "py.typed"
dist = metadata.distribution("sharescan")
assert dist.metadata["License-Expression"] == "Apache-2.0", dist.metadata["License-Expression"]
assert any(str(f).endswith("licenses/LICENSE") for f in dist.files or []), "LICENSE"
PY

for model in mlp.onnx mlp.safetensors; do
  "$bin/sharescan" analyze "$repo/fixtures/$model" --json > "$tmp/out.json" 2> "$tmp/err" \
    || fail "analyze $model exited $? without torch: $(cat "$tmp/err")"
  "$bin/python" -c "import json, sys; json.load(open(sys.argv[1]))" "$tmp/out.json" || fail "analyze $model --json printed no JSON"
done

set +e
"$bin/sharescan" analyze "$repo/fixtures/mlp.pt" > "$tmp/out" 2> "$tmp/err"
code=$?
set -e
[ "$code" -eq 2 ] || fail "analyze mlp.pt without torch exited $code, expected 2: $(cat "$tmp/err")"
[ "$(wc -l < "$tmp/err")" -eq 1 ] || fail "expected one line on stderr, got: $(cat "$tmp/err")"
grep -q "^error: .*mlp.pt: reading PyTorch files needs torch: pip install 'sharescan\[torch\]'$" "$tmp/err" \
  || fail "the refusal does not name the extra: $(cat "$tmp/err")"
[ ! -s "$tmp/out" ] || fail "a refusal printed on stdout"
echo "no-torch check: base install reads ONNX and safetensors; mlp.pt -> $(cat "$tmp/err")"
