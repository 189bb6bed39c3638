'use strict';
// Stands in for thread-stream in the agent's bundle (scripts/build.mjs). pino loads it, and
// with it node:worker_threads, for log transports running in a worker thread; the agent
// writes JSON lines to stdout and never starts one (lib/logger.ts).
module.exports = class ThreadStream {
  constructor() {
    throw new Error("pino transports are not part of berth's agent bundle");
  }
};
