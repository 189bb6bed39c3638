#!/usr/bin/env bash
# Stages the renewer Lambda's code into a directory (default .build/renewer):
# the built dist/, package.json and production node_modules, no Pulumi. infra/
# passes that directory to the CertificateRenewer component as a FileArchive;
# the handler is traefik/renewer/handler.handler.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$src/.build/renewer}

(cd "$src" && npm run --silent build)
rm -rf "$out"
mkdir -p "$out/infra"
cp -r "$src/dist/." "$out/"
cp "$src/package.json" "$src/package-lock.json" "$out/"
cp "$src/infra/package.json" "$out/infra/"   # lets npm see the workspace it then leaves out
(cd "$out" && npm ci --omit=dev --workspaces=false --no-audit --no-fund --loglevel=error)
rm -rf "$out/infra" "$out/package-lock.json"
echo "renewer staged in $out (handler traefik/renewer/handler.handler)"
