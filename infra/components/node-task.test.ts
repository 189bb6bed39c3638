import { describe, expect, it } from 'vitest';
import { nodeTask } from './node-task.js';

describe('nodeTask', () => {
  const t = nodeTask({ node: 'n1', host: 'shop-h1', cluster: 'shop', image: 'app:1', port: 8080, zone: 'example.com', sizeGiB: 50 });
  it('mounts a shared, autoprovisioned berth volume into the container', () => {
    expect(t.volumes[0]!.dockerVolumeConfiguration).toMatchObject({ scope: 'shared', autoprovision: true, driver: 'berth', driverOpts: { size: '50G' } });
    expect(t.containerDefinitions[0]!.mountPoints).toEqual([{ sourceVolume: 'data', containerPath: '/data' }]);
  });
  it('pins the task to its host attribute and nothing else', () => {
    expect(t.placementConstraints).toEqual([{ type: 'memberOf', expression: 'attribute:berth.host == shop-h1' }]);
  });
  it('routes the node name through Traefik to its port', () => {
    expect(Object.values(t.containerDefinitions[0]!.dockerLabels)).toContain('Host(`n1.example.com`)');
  });
});
