import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, loadInstalledConfig, parseEnvFile, pluginSocketPath } from './config.js';

describe('loadConfig', () => {
  it('has working defaults', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ BERTH_BACKEND: 'auto', BERTH_PLUGIN_NAME: 'berth', BERTH_DEFAULT_SIZE: 10 * 2 ** 30, BERTH_HEALTH_ADDR: '127.0.0.1:9470' });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('names every bad variable and what it got', () => {
    expect(() => loadConfig({ BERTH_BACKEND: 'nfs', BERTH_DEFAULT_SIZE: 'huge', BERTH_HEALTH_ADDR: 'nowhere', BERTH_COLOUR: 'red' })).toThrow(
      /BERTH_COLOUR: unknown setting[\s\S]*BERTH_BACKEND: .*\(got "nfs"\)[\s\S]*BERTH_DEFAULT_SIZE: invalid size "huge"[\s\S]*BERTH_HEALTH_ADDR: must be host:port/,
    );
  });

  it('shares the EC2 schedule only when a bucket is set, under ec2-schedule/ unless told, and refuses a bad bucket or prefix', () => {
    const unset = loadConfig({});
    expect(unset.BERTH_EC2_SCHEDULE_BUCKET).toBeUndefined();
    expect(unset.BERTH_EC2_SCHEDULE_PREFIX).toBe('ec2-schedule/');
    expect(loadConfig({ BERTH_EC2_SCHEDULE_BUCKET: 'berth-environment-1a2b', BERTH_EC2_SCHEDULE_PREFIX: 'berth/schedules/' })).toMatchObject({ BERTH_EC2_SCHEDULE_BUCKET: 'berth-environment-1a2b', BERTH_EC2_SCHEDULE_PREFIX: 'berth/schedules/' });
    expect(() => loadConfig({ BERTH_EC2_SCHEDULE_BUCKET: 's3://bucket', BERTH_EC2_SCHEDULE_PREFIX: 'schedules' })).toThrow(
      /BERTH_EC2_SCHEDULE_BUCKET: must be an S3 bucket name[\s\S]*BERTH_EC2_SCHEDULE_PREFIX: must end with "\/"/,
    );
  });

  it("leaves the test harness's BERTH_TEST_* variables alone: a test run's environment reaches the agents it starts", () => {
    expect(loadConfig({ BERTH_TEST_EARLY_DEBOOTSTRAP: '1', BERTH_TEST_LOGS: '1', BERTH_LOG_LEVEL: 'warn' }).BERTH_LOG_LEVEL).toBe('warn');
  });

  it('reads a JSON file under the environment, camelCase or variable names', () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-cfg-'));
    const file = join(dir, 'berth.json');
    writeFileSync(file, JSON.stringify({ stateDir: '/srv/berth', BERTH_LOG_LEVEL: 'debug', defaultSize: '2GiB' }));
    const c = loadConfig({ BERTH_CONFIG_FILE: file, BERTH_LOG_LEVEL: 'warn' });
    expect(c.BERTH_STATE_DIR).toBe('/srv/berth');
    expect(c.BERTH_LOG_LEVEL).toBe('warn');
    expect(c.BERTH_DEFAULT_SIZE).toBe(2 * 2 ** 30);
    writeFileSync(file, '{nope');
    expect(() => loadConfig({ BERTH_CONFIG_FILE: file })).toThrow(/BERTH_CONFIG_FILE .*berth.json/);
  });
});

describe('the installed configuration (env file)', () => {
  it('reads KEY=VALUE lines as systemd does, and names a line that is not one', () => {
    expect(parseEnvFile('# c\n; c\n\nBERTH_A=1\n  BERTH_B="two words"\nBERTH_C=\'x\'\n')).toEqual({ BERTH_A: '1', BERTH_B: 'two words', BERTH_C: 'x' });
    expect(() => parseEnvFile('BERTH_A=1\nBERTH_BACKEND loop\n', '/etc/berth/berth.env')).toThrow(/\/etc\/berth\/berth\.env line 2: not KEY=VALUE/);
  });

  it('puts BERTH_* variables over the env file, and gives the socket path', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'berth-env-')), 'berth.env');
    writeFileSync(file, 'BERTH_PLUGIN_NAME=fromfile\nBERTH_STATE_DIR=/srv/berth\nPATH=/ignored\n');
    const c = loadInstalledConfig({ BERTH_ENV_FILE: file, BERTH_STATE_DIR: '/override' });
    expect(pluginSocketPath(c)).toBe('/run/docker/plugins/fromfile.sock');
    expect(c.BERTH_STATE_DIR).toBe('/override');
    expect(loadInstalledConfig({ BERTH_ENV_FILE: join(file, 'missing') }).BERTH_PLUGIN_NAME).toBe('berth');
  });
});
