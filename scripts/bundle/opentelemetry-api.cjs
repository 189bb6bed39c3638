'use strict';
// Stands in for @opentelemetry/api in the agent's bundle (scripts/build.mjs): prom-client
// calls it only to label exemplars, which the agent never enables, and the real package
// costs the agent ~1 MB of resident memory for nothing.
exports.context = { active: () => undefined };
exports.trace = { getSpan: () => undefined };
