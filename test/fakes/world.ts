import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { silentLogger } from '../../lib/logger.js';
import { DockerVolumeDriver } from '../../volume-plugin/docker-driver.js';
import { VolumeService, type DEADLINES, type EngineReferences } from '../../volume-plugin/service.js';
import type { VolumeOptions } from '../../volume-plugin/options.js';
import { hostPathsFor } from '../helpers/manager.js';
import { FakeBackend } from './backend.js';
import { FakeFilesystem } from './filesystem.js';
import { FakeHost } from './host.js';

const MiB = 2 ** 20;

export interface FakeWorldOptions {
  deadlines?: Partial<typeof DEADLINES>;
  engine?: EngineReferences;
  unmountGraceMs?: number;
  registry?: Registry;
  validate?(name: string, options: VolumeOptions): void;
}

/**
 * The volume service and its Docker front end over the in-memory backend and
 * filesystem, with its state file in a temporary directory: no root, no loop
 * device, no dockerd. `restart()` makes a new service over the same host and
 * state directory, as an agent restart does.
 */
export function fakeWorld(options: FakeWorldOptions = {}) {
  const stateDir = mkdtempSync(join(tmpdir(), 'berth-unit-'));
  const host = new FakeHost();
  const backend = new FakeBackend(host, options.validate ? { validate: options.validate } : {});
  const fs = new FakeFilesystem(host);
  const make = () =>
    new DockerVolumeDriver(
      new VolumeService({
      backend,
      fs,
      paths: hostPathsFor(stateDir),
      defaults: { sizeBytes: 64 * MiB, fs: 'ext4' },
      logger: silentLogger,
      ...(options.deadlines ? { deadlines: options.deadlines } : {}),
      ...(options.engine ? { engine: options.engine } : {}),
      ...(options.unmountGraceMs !== undefined ? { unmountGraceMs: options.unmountGraceMs } : {}),
      ...(options.registry ? { registry: options.registry } : {}),
      }),
    );
  const world = {
    stateDir,
    host,
    backend,
    fs,
    docker: make(),
    get service() {
      return world.docker.service;
    },
    async start() {
      await world.docker.service.start();
      return world;
    },
    async restart() {
      world.docker = make();
      await world.docker.service.start();
      return world;
    },
    /** Consumer → count recorded in the state file for a volume. */
    savedMounts(name: string): Record<string, number> | undefined {
      const state = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { volumes: Record<string, { mounts: Record<string, number> }> };
      return state.volumes[name]?.mounts;
    },
    cleanup() {
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
  return world;
}

export type FakeWorld = ReturnType<typeof fakeWorld>;
