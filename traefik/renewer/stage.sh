#!/usr/bin/env bash
# Stages the renewer Lambda's code into a directory (default .build/renewer):
# the built dist/ (bundled with its dependencies, so no node_modules) and
# package.json (it marks the .js files as ES modules). infra/ passes that
# directory to the CertificateRenewer component as a FileArchive; the handler is
# traefik/renewer/handler.handler.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$src/.build/renewer}

(cd "$src" && npm run --silent build)
rm -rf "$out"
mkdir -p "$out"
cp -r "$src/dist/." "$out/"
cp "$src/package.json" "$out/"
echo "renewer staged in $out (handler traefik/renewer/handler.handler)"
