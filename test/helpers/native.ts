// Whether the addon is here: tests of the native side skip with the reason when it is not (a bare
// checkout before `npm run build:native`); `npm test` in CI always has it.
import { loadBinding } from '../../src/native.js';

/** false when the addon loads; else the skip reason, naming the fix. */
export function nativeSkip(): string | false {
  try {
    loadBinding();
    return false;
  } catch (err) {
    return `the native addon is not available (npm run build:native): ${(err as Error).message.split('\n')[0]}`;
  }
}
