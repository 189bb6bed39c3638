import { Gauge, type Registry } from 'prom-client';
import type { PersistedVolume } from './state-store.js';

/**
 * The volume service's gauges, read from its local view when /metrics is
 * scraped: berth_volumes_mounted and berth_volumes_known.
 */
export function registerVolumeGauges(registry: Registry, volumes: () => Iterable<PersistedVolume>): void {
  new Gauge({
    name: 'berth_volumes_mounted',
    help: 'Volumes mounted on this host by berth',
    registers: [registry],
    collect() {
      let n = 0;
      for (const v of volumes()) if (v.mounted) n++;
      this.set(n);
    },
  });
  new Gauge({
    name: 'berth_volumes_known',
    help: "Volumes in berth's local view",
    registers: [registry],
    collect() {
      let n = 0;
      for (const _ of volumes()) n++;
      this.set(n);
    },
  });
}
