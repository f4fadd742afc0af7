// The line protocol between a bench file and bench/run.ts: each result row is one stdout line
// `::bench-row::{json}`; everything else a bench prints passes through as commentary.
export const ROW_PREFIX = '::bench-row::';

export interface BenchRow {
  bench: string;
  case: string;
  /** column -> value; numbers are printed with 3 significant digits */
  values: Record<string, number | string>;
}

export function reportRow(row: BenchRow): void {
  process.stdout.write(`${ROW_PREFIX}${JSON.stringify(row)}\n`);
}
