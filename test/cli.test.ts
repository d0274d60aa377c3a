// The gemma-edge command line, run as a user runs it: output formats, llama.cpp agreement, errors.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "./helpers/cli.ts";
import { LlamaCppModel } from "./helpers/llama-cpp.ts";

const run = (...args: string[]) => runCli(args);

const dir = mkdtempSync(join(tmpdir(), "gemma-edge-cli-"));
const model = join(dir, "m.gguf");
let ref: LlamaCppModel;

beforeAll(async () => {
  const r = await run("make-test-model", "--out", model, "--shape", "tiny-gqa", "--seed", "5");
  expect(r.code).toBe(0);
  ref = await LlamaCppModel.load(model);
});
afterAll(async () => ref?.dispose());

describe("gemma-edge CLI", () => {
  it("make-test-model reports what it wrote", async () => {
    const out = join(dir, "f16.gguf");
    const r = await run("make-test-model", "--out", out, "--type", "f16", "--layers", "1", "--vocab", "600");
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^wrote .*f16\.gguf \([\d.]+ MB, tiny, f16, seed 1\)\n$/);
    expect(readFileSync(out).subarray(0, 4).toString()).toBe("GGUF");
  });

  it("tokenize prints the ids llama.cpp gives, without BOS", async () => {
    const text = "Hello world, <start_of_turn> 日本語 🎉\t\n";
    const r = await run("tokenize", "--model", model, "--text", text);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(JSON.stringify({ ids: ref.tokenize(text) }) + "\n");
  });

  it("generate --threads 2 (the wasm kernels on a worker thread too) prints llama.cpp's greedy continuation", async () => {
    const r = await run("generate", "--model", model, "--prompt", "hello", "--max-tokens", "16", "--temperature", "0", "--json", "--threads", "2");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.ids).toEqual(await ref.greedy(j.prompt_ids, 16));
  });

  it("generate --temperature 0 --json prints llama.cpp's greedy continuation as one JSON line", async () => {
    const r = await run("generate", "--model", model, "--prompt", "hello", "--max-tokens", "16", "--temperature", "0", "--json");
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines).toHaveLength(1);
    const j = JSON.parse(lines[0]!);
    expect(Object.keys(j)).toEqual(["prompt_ids", "ids", "text", "finish_reason"]);
    expect(j.prompt_ids).toEqual([2, ...ref.tokenize("hello")]);
    expect(j.ids).toEqual(await ref.greedy(j.prompt_ids, 16));
    expect(["stop", "length"]).toContain(j.finish_reason);
    expect(typeof j.text).toBe("string");
  });

  it("generate --chat uses the chat template (one BOS, turn markers) and the reference backend agrees", async () => {
    const a = JSON.parse((await run("generate", "--model", model, "--prompt", "hi", "--chat", "--max-tokens", "8", "--temperature", "0", "--json")).stdout);
    expect(a.prompt_ids.slice(0, 2)).toEqual([2, 106]);
    expect(a.prompt_ids.filter((i: number) => i === 2)).toHaveLength(1);
    const b = JSON.parse((await run("generate", "--model", model, "--prompt", "hi", "--chat", "--max-tokens", "8", "--temperature", "0", "--json", "--backend", "reference")).stdout);
    expect(b).toEqual(a);
  });

  it("generate streams plain text without --json", async () => {
    const j = JSON.parse((await run("generate", "--model", model, "--prompt", "hello", "--max-tokens", "8", "--temperature", "0", "--json")).stdout);
    const r = await run("generate", "--model", model, "--prompt", "hello", "--max-tokens", "8", "--temperature", "0");
    expect(r.stdout).toBe(j.text + "\n");
  });

  it("prints help for every command", async () => {
    for (const args of [["--help"], ["tokenize", "--help"], ["generate", "--help"], ["make-test-model", "--help"]]) {
      const r = await run(...args);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/Usage: gemma-edge/);
    }
  });

  it.each([
    [["frobnicate"], 2, /unknown command "frobnicate"/],
    [["tokenize", "--text", "x"], 2, /--model is required/],
    [["generate", "--model", "/nonexistent.gguf", "--prompt", "x"], 1, /model file not found: \/nonexistent\.gguf/],
    [["generate", "--model", "MODEL", "--prompt", "x", "--temperature", "hot"], 2, /--temperature must be a number >= 0 and <= 100, got "hot"/],
    [["generate", "--model", "MODEL", "--prompt", "x", "--max-tokens", "0"], 2, /--max-tokens must be an integer >= 1/],
    [["generate", "--model", "MODEL", "--prompt", "x", "--backend", "cuda"], 2, /--backend must be one of wasm, webgpu, reference, got "cuda"/],
    [["generate", "--model", "MODEL", "--bogus"], 2, /Unknown option '--bogus'/],
    [["generate", "--model", "MODEL", "--prompt", "x", "--threads", "0"], 2, /--threads must be an integer >= 1 and <= 256, got "0"/],
    [["serve", "--model", "MODEL", "--threads", "1.5"], 2, /--threads must be an integer >= 1 and <= 256, got "1\.5"/],
    [["generate", "--model", "TRUNCATED", "--prompt", "x"], 1, /truncated/],
    [["make-test-model", "--out", "/tmp/x.gguf", "--shape", "huge"], 2, /--shape must be one of tiny, tiny-gqa, tiny-k, gemma-2b, got "huge"/],
    [["make-test-model", "--out", "/tmp/x.gguf", "--heads", "3", "--kv-heads", "2"], 2, /--heads 3 must be a multiple of --kv-heads 2/],
    [["make-test-model", "--out", "/tmp/x.gguf", "--type", "q4_k"], 1, /token_embd\.weight: 128 columns is not a multiple of 256, required by Q4_K/],
  ] as [string[], number, RegExp][])("%j fails with exit code %i and one clear line", async (args, code, msg) => {
    const truncated = join(dir, "truncated.gguf");
    writeFileSync(truncated, readFileSync(model).subarray(0, 3000));
    const r = await run(...args.map((a) => (a === "MODEL" ? model : a === "TRUNCATED" ? truncated : a)));
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(msg);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stdout).toBe("");
  });
});

describe("gemma-edge r2 put --local", () => {
  it("puts the file, byte for byte, where wrangler's local R2 reads it", async () => {
    const persist = join(dir, "state");
    const r = await run("r2", "put", "--file", model, "--key", "models/m.gguf", "--local", "--persist", persist);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^put .*m\.gguf \([\d.]+ MB\) into local R2 as gemma-edge-models\/models\/m\.gguf in [\d.]+ s\n$/);
    // read back through wrangler's own local R2 (what `wrangler dev` serves from)
    const { runWrangler } = await import("../src/tools/r2.ts");
    const back = join(dir, "back.gguf");
    const g = await runWrangler(["r2", "object", "get", "gemma-edge-models/models/m.gguf", "--file", back, "--local", "--persist-to", persist], "pipe");
    expect(g.code, g.stderr).toBe(0);
    expect(Buffer.compare(readFileSync(back), readFileSync(model))).toBe(0);
  }, 60_000);

  it("names what is wrong: missing file, no target, unknown subcommand, bad bucket", async () => {
    const cases: [string[], RegExp][] = [
      [["r2", "put", "--file", join(dir, "nope.gguf"), "--key", "k", "--local"], /not found: .*nope\.gguf/],
      [["r2", "put", "--file", model, "--key", "k"], /give one of --local or --remote/],
      [["r2", "put", "--file", model, "--local"], /--key is required/],
      [["r2", "put", "--file", model, "--key", "k", "--local", "--bucket", "Bad_Name"], /--bucket "Bad_Name" is not a valid R2 bucket name/],
      [["r2", "get"], /unknown r2 command "get"/],
    ];
    for (const [args, msg] of cases) {
      const r = await run(...args);
      expect(r.code, args.join(" ")).not.toBe(0);
      expect(r.stderr).toMatch(msg);
    }
  });
});
