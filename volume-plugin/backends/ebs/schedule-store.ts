/**
 * Where the fleet's shared EC2 schedule lives (docs/design.md §6, "Sharing the account"): one small
 * document per account and Region that every host's agent reads, and changes only by
 * compare-and-swap. `S3ScheduleStore` (s3-schedule-store.ts) keeps it in an S3 object with
 * conditional writes; the unit tests and the fleet simulation keep it in memory.
 */
export interface ScheduleDocument {
  body: string;
  /** Opaque; changes with every write (S3: the object's ETag). */
  version: string;
}

export interface ScheduleStore {
  /** For logs and errors: s3://bucket/key. */
  readonly where: string;
  /** The document, or undefined when there is none yet. Throws when the store cannot be reached or refuses. */
  read(signal?: AbortSignal): Promise<ScheduleDocument | undefined>;
  /**
   * Writes `body` only if the document is still at `version` (undefined: only if there is none).
   * Returns the new version, or undefined when another writer came first (nothing was written).
   * Throws when the store cannot be reached or refuses.
   */
  write(body: string, version: string | undefined, signal?: AbortSignal): Promise<string | undefined>;
}
