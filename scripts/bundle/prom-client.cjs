'use strict';
// The part of prom-client the agent uses, for the agent's bundle only (scripts/build.mjs).
// prom-client's index also loads its Pushgateway (http, https, zlib), its cluster
// aggregator (node:cluster) and its Summary (tdigest); the agent uses none of them.
// A name the agent imports that is missing here fails the build (scripts/build.mjs checks), not the agent.
exports.Registry = require('prom-client/lib/registry');
exports.Counter = require('prom-client/lib/counter');
exports.Gauge = require('prom-client/lib/gauge');
exports.Histogram = require('prom-client/lib/histogram');
exports.collectDefaultMetrics = require('prom-client/lib/defaultMetrics');
