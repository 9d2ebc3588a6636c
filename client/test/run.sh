#!/usr/bin/env bash
# The client package's checks, as CI runs them (sfu/tests/client_package.rs calls this):
# installs the dev dependencies when missing, runs `npm test` (type check and unit tests), then packs
# the package and installs the tarball into a scratch project, as a user's application would, and
# checks that both Node's resolution and TypeScript's find the module and its declarations there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v npm >/dev/null || { echo "client package: npm is needed (Node.js >= 20)" >&2; exit 1; }
if [[ ! -d node_modules/typescript ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

npm test

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
tarball=$(npm pack --silent --pack-destination "$scratch")
echo "client package: packed $tarball"
files=$(tar -tzf "$scratch/$tarball" | sort | tr '\n' ' ')
expected="package/README.md package/package.json package/src/sfu-client.d.ts package/src/sfu-client.js "
if [[ "$files" != "$expected" ]]; then
  echo "client package: the tarball holds [$files], expected [$expected]" >&2
  exit 1
fi

app="$scratch/app"
mkdir -p "$app"
cat > "$app/package.json" <<'JSON'
{ "name": "app", "private": true, "type": "module" }
JSON
# The package has no dependencies, so installing the tarball needs no registry.
(cd "$app" && npm install --offline --no-audit --no-fund --loglevel=error "../$tarball")
cat > "$app/app.ts" <<'TS'
import { SfuClient, VERSION, type StreamState } from 'sfu-client';
const client = new SfuClient();
client.addEventListener('stream-state', (e) => {
  const s: StreamState = e.detail;
  console.log(s.reason, VERSION);
});
TS
cat > "$app/tsconfig.json" <<'JSON'
{ "compilerOptions": { "module": "nodenext", "moduleResolution": "nodenext", "target": "ES2022",
  "lib": ["ES2022", "DOM"], "strict": true, "noEmit": true }, "files": ["app.ts"] }
JSON
node node_modules/typescript/bin/tsc -p "$app/tsconfig.json"
version=$(cd "$app" && node --input-type=module -e "import('sfu-client').then((m) => console.log(m.VERSION))")
[[ "$version" == "$(node -p "require('./package.json').version")" ]] || {
  echo "client package: the installed module says version '$version'" >&2
  exit 1
}
echo "client package: ok (installed from $tarball, version $version, types resolved)"
