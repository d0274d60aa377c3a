#!/usr/bin/env node
// Entry point of the `gemma-edge` command. The CLI is TypeScript run by Node's own type stripping, which needs
// Node >= 22.18: the project's `node` devDependency provides it on PATH under npm/npx.
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(`gemma-edge: needs Node >= 22.18 (this is ${process.version}); run it through npx or npm run, which use the project's Node\n`);
  process.exit(1);
}
const { main } = await import("../src/cli/main.ts");
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`gemma-edge: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
