import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const here = import.meta.dirname;
const unit = readFileSync(join(here, 'berth.service'), 'utf8');
const directive = (key: string) => unit.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));

describe('berth.service', () => {
  it('starts berth before dockerd and the ECS agent, and counts as started only once the socket answers', () => {
    expect(directive('Before').join(' ').split(/\s+/)).toEqual(expect.arrayContaining(['docker.service', 'ecs.service']));
    expect(directive('WantedBy').join(' ')).toContain('docker.service');
    // berth wait probes the socket (a stale one left by a SIGKILL does not count) and the health endpoint.
    expect(directive('ExecStartPost')[0]).toMatch(/node \/opt\/berth\/dist\/agent\/cli\.js wait --timeout \d+$/);
    expect(directive('ExecStart')[0]).toMatch(/node .*\/opt\/berth\/dist\/agent\/main\.js$/);
  });

  it('shares the host mount namespace (no sandboxing option that would hide its mounts from dockerd)', () => {
    for (const key of ['ProtectSystem', 'ProtectHome', 'PrivateTmp', 'PrivateDevices', 'PrivateMounts', 'ReadOnlyPaths', 'TemporaryFileSystem', 'MountFlags']) {
      expect(directive(key), key).toEqual([]);
    }
  });

  it('leaves mounts in place on stop and keeps only the capabilities mounting needs', () => {
    expect(directive('KillMode')).toEqual(['process']);
    const caps = directive('CapabilityBoundingSet')[0]!.split(' ');
    expect(caps).toEqual(expect.arrayContaining(['CAP_SYS_ADMIN', 'CAP_LINUX_IMMUTABLE']));
    expect(caps).not.toContain('CAP_NET_ADMIN');
    expect(caps).not.toContain('CAP_SYS_PTRACE');
  });
});

describe('install-local.sh', () => {
  it('passes shellcheck', () => {
    expect(() => execFileSync('shellcheck', [join(here, 'install-local.sh')], { encoding: 'utf8' })).not.toThrow();
  });
});
