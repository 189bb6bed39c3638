#!/usr/bin/env bash
# Stages the operations Lambdas (ecs-agent-update, state-backup-cleanup) into a directory
# (default .build/lambdas) as ES modules; the Node.js 24 Lambda runtime (infra/components/scheduled-job.ts LAMBDA_RUNTIME) provides the AWS SDK v3
# they import. The programs pass that directory to ScheduledJob as a FileArchive
# (config berth:operations.codePath); handlers are <name>.handler.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$src/.build/lambdas}

rm -rf "$out"
mkdir -p "$out"
(cd "$src" && npx tsc --outDir "$out" --rootDir infra/lambdas --module NodeNext --moduleResolution NodeNext \
  --target ES2022 --skipLibCheck --types node infra/lambdas/ecs-agent-update.ts infra/lambdas/state-backup-cleanup.ts)
echo '{"type":"module"}' >"$out/package.json"
echo "operations lambdas staged in $out (handlers ecs-agent-update.handler, state-backup-cleanup.handler)"
