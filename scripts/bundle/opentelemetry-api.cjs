'use strict';
// Stands in for @opentelemetry/api in the agent's bundle (scripts/build.mjs): prom-client's
// default CPU metric calls it only to label exemplars, which the agent never enables. With
// prom-client's index left out as well (./prom-client.cjs), the agent holds ~0.4 MB less
// (docs/operations.md "Where it stands").
exports.context = { active: () => undefined };
exports.trace = { getSpan: () => undefined };
