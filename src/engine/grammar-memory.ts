// The memory the grammar engine (grammar.ts) may hold, apart so that the planner can use it without loading the engine.

/**
 * The most WebAssembly memory the grammar engine keeps: a compile that leaves it larger starts a fresh instance
 * for the next ones (and the compiled grammars kept go). On the 256k vocabulary its tables take about 20 MB
 * (`npm run bench:grammar`). The coordinator runs the engine: a part it holds itself gets its budget less this
 * (shard-plan.ts localReserveBytes).
 */
export const GRAMMAR_MEMORY_BYTES = 32 * 2 ** 20;
