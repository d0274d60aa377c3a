#!/usr/bin/env node
// Entry point of the `gemma-edge` command. The CLI is TypeScript run by Node's own type stripping (Node >= 22.18).
import { main } from "../src/cli/main.ts";

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`gemma-edge: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
