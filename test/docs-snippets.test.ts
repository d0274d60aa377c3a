// The command lines in the README and docs/*.md run as written, so the documents cannot drift from the code: every
// concrete `npx gemma-edge ...` line in a shell block (not a synopsis with [options] or a|b, not one that needs an
// account, a server or minutes) runs in a folder where the files it names are tiny stand-ins of the same kind (a
// Q4_0 GGUF, an F32 GGUF, a Hugging Face Gemma or Gemma 3 checkpoint), and must exit 0.
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { SHAPES } from "../src/tools/make-test-model.ts";
import { writeHfCheckpoint } from "./helpers/hf-checkpoint.ts";
import { testModel } from "./helpers/models.ts";

const root = resolve(import.meta.dirname, "..");
const BIN = join(root, "bin/gemma-edge.js");
const docs = ["README.md", ...readdirSync(join(root, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];

/** Subcommands that are safe and quick to run here (`deploy` only with --dry-run). */
const RUNNABLE = new Set(["make-test-model", "tokenize", "generate", "shard-plan", "quantize", "convert", "deploy"]);

/** The `npx gemma-edge` lines of the shell blocks of a markdown file, comments stripped. */
function commandLines(file: string): string[] {
  const out: string[] = [];
  let inShell = false;
  for (const line of readFileSync(join(root, file), "utf8").split("\n")) {
    if (line.startsWith("```")) {
      inShell = !inShell && /^```(sh|bash|shell)?\s*$/.test(line);
      continue;
    }
    const cmd = line.replace(/\s+#\s.*$/, "").trim();
    if (inShell && cmd.startsWith("npx gemma-edge ")) out.push(cmd);
  }
  return out;
}

const all = docs.flatMap((f) => commandLines(f).map((cmd) => ({ file: f, cmd })));
const runnable = all.filter(({ cmd }) => {
  const words = cmd.split(/\s+/);
  if (!RUNNABLE.has(words[2]!)) return false;
  if (/[[\]|]|\.\.\./.test(cmd)) return false; // a synopsis, not a command
  return words[2] !== "deploy" || words.includes("--dry-run");
});

let dir = "";
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "gemma-edge-docs-"));
  // the files the documents name, as tiny models of the same kind
  const q4 = (await testModel("tiny-k", "q4_0")).bytes;
  const f32 = (await testModel("tiny-k", "f32")).bytes;
  for (const name of ["gemma-2b-it.Q4_0.gguf", "m.gguf", "model-q4_0.gguf"]) writeFileSync(join(dir, name), q4);
  for (const name of ["gemma-2b-it.gguf", "model-f16.gguf"]) writeFileSync(join(dir, name), f32);
  mkdirSync(join(dir, "models"));
  writeFileSync(join(dir, "models/gemma-2b-shape-q4_0.gguf"), q4);
  mkdirSync(join(dir, "gemma-2b-it"));
  await writeHfCheckpoint(join(dir, "gemma-2b-it"), SHAPES["tiny-k"]!, 3);
  await writeHfCheckpoint(join(dir, "gemma-3-1b-it"), SHAPES["tiny-gemma3"]!, 3); // a Gemma3ForCausalLM checkpoint
}, 120_000);

describe("the command lines in the README and docs run as written", () => {
  it("finds the documents' commands (and runs more than a handful of them)", () => {
    expect(all.length).toBeGreaterThan(10);
    expect(runnable.length).toBeGreaterThanOrEqual(6);
  });

  it.each(runnable.map((r) => [r.file, r.cmd]))("%s: %s", async (_file, cmd) => {
    const args = cmd.split(/\s+/).slice(2).map((a) => a.replace(/^"(.*)"$/, "$1"));
    const res = await promisify(execFile)(process.execPath, [BIN, ...args], { cwd: dir, env: { ...process.env, INIT_CWD: dir }, maxBuffer: 1 << 24 }).then(
      (r) => ({ code: 0, ...r }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
    expect(res.code, `${cmd}\n${res.stderr}`).toBe(0);
  }, 120_000);
});
