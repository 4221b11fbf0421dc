/**
 * Process entry: runs one load spec (JSON in argv[2]) and prints the result
 * as one JSON line on stdout. A separate process so it can be pinned to its
 * own core and never shares an event loop with the system under test.
 */
import { runLoad, type LoadSpec } from '../loadgen.js';

const spec = JSON.parse(process.argv[2] ?? '') as LoadSpec;
// First line: the start time, so the orchestrator can time events (a capacity change) against t0.
runLoad(spec, (epochMs) => process.stdout.write(`${JSON.stringify({ started: epochMs })}\n`)).then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
  },
  (err: unknown) => {
    process.stderr.write(`loadgen: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
