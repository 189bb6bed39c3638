/**
 * English messages for zod/mini, imported for its effect by every module that
 * validates with it. The agent validates with zod/mini rather than zod: the same
 * checks and messages, and the bundle holds only the parts it uses, a fraction of
 * the resident memory (bench/plugin-hot-path.ts). Without a locale, zod/mini
 * answers every failure with "Invalid input".
 */
import { config } from 'zod/mini';
import en from 'zod/v4/locales/en.js';

config(en());
