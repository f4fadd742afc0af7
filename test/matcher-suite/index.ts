// The shared matcher conformance suite, one module per feature (docs/MATCHER.md is the spec it checks).
// Both matchers run all of it: test/matcher.ts.test.ts and test/matcher.native.test.ts.
import type { Matcher } from '../../src/match/matcher-api.js';
import { sequences } from './sequences.js';
import { timeouts } from './timeouts.js';
import { sources } from './sources.js';
import { sharedPorts } from './shared-ports.js';
import { visibility } from './visibility.js';
import { destinations } from './destinations.js';
import { oneTime } from './one-time.js';
import { eviction } from './eviction.js';
import { reload } from './reload.js';
import { eventFlags } from './event-flags.js';
import { frames } from './frames.js';
import { icmp } from './icmp.js';
import { spa } from './spa.js';
import { derived } from './derived.js';
import { Run, type Suite } from './harness.js';

export function runMatcherSuite(name: string, make: () => Matcher): void {
  const suite: Suite = { name, make, run: (cfg, opts = {}) => new Run(make(), cfg, opts) };
  for (const group of [sequences, timeouts, sources, sharedPorts, visibility, destinations, oneTime, eviction, reload, eventFlags, frames, icmp, spa, derived]) group(suite);
}
