'use strict';
// Stands in for thread-stream in the agent's bundle (scripts/build.mjs): pino requires it at
// start for its transports, which run in worker threads, and the agent logs JSON lines to
// stdout without a transport (lib/logger.ts). Without it the agent does not load
// node:worker_threads (docs/operations.md, "On the release's Node.js 24").
class ThreadStream {
  constructor() {
    throw new Error("pino transports are not in berth's agent bundle (scripts/bundle/thread-stream.cjs)");
  }
}
module.exports = ThreadStream;
