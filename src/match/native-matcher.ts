// The C++ matcher (native/core/matcher.cc) behind the Matcher interface, run synchronously on the calling
// thread: for tests, benchmarks and replay. The addon validates the batch shape itself (TypeError /
// RangeError), so this wrapper only adapts the call shapes.
import { STAT_NAMES, type FrameBatch, type Matcher, type MatcherStats } from './matcher-api.js';
import { loadBinding, type NativeMatcherHandle } from '../native.js';

export class NativeMatcher implements Matcher {
  private readonly handle: NativeMatcherHandle;
  private readonly counters = new Float64Array(STAT_NAMES.length);

  /** `shard` is written into every event record (0 for a synchronous matcher). */
  constructor(shard?: number) {
    const binding = loadBinding();
    this.handle = new binding.NativeMatcher(shard);
  }

  load(program: Uint32Array): void {
    this.handle.load(program);
  }

  feed(batch: FrameBatch): Uint8Array {
    return this.handle.feed(batch.data, batch.offsets, batch.timestampsUs, batch.linkTypes);
  }

  tick(nowUs: number): Uint8Array {
    return this.handle.tick(nowUs);
  }

  /** Frees the C++ tracking state now instead of at garbage collection; any later call throws. */
  close(): void {
    this.handle.close();
  }

  stats(): MatcherStats {
    this.handle.stats(this.counters);
    const out = {} as MatcherStats;
    STAT_NAMES.forEach((name, i) => (out[name] = this.counters[i]));
    return out;
  }
}
