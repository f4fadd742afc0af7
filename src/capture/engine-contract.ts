// The capture engine's numbers shared with native/core/capture.h, checked against the addon at load
// (src/native.ts): the counters after the matcher's in each shard's stats block, and the codes of ERROR
// records. No imports, so src/native.ts can read them without loading the engine.

/** Capture counters after MATCHER.md §8's in each shard's block (native/core/capture.h CaptureStat). */
export const CAPTURE_STAT_NAMES = ['ringPackets', 'ringDrops', 'ringFreezes', 'batches', 'batchesDropped', 'framesForwarded', 'filterCoarse'] as const;
export type CaptureStatName = (typeof CAPTURE_STAT_NAMES)[number];

/** Error codes of ERROR records (native/core/capture.h EngineErrorCode). */
export const EngineError = { INTERFACE_DOWN: 1, INTERFACE_UP: 2, INTERFACE_REOPEN: 3, CAPTURE_FAILED: 4 } as const;
