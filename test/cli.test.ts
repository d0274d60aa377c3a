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
    expect(r.stderr).toMatch(/^wrote .*f16\.gguf \([\d.]+ MB, tiny, f16, seed 1\) in [\d.]+ s\n$/);
    expect(readFileSync(out).subarray(0, 4).toString()).toBe("GGUF");
  });

  it("make-test-model --arch gemma3 writes a Gemma 3 file with the keys llama.cpp's converter writes", async () => {
    const out = join(dir, "g3.gguf");
    const r = await run("make-test-model", "--out", out, "--arch", "gemma3", "--window", "8", "--rope-scaling", "4", "--type", "q8_0");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/, tiny-gemma3, q8_0, seed 1\) in [\d.]+ s\n$/);
    const { readGguf } = await import("../src/engine/gguf.ts");
    const { MemoryByteSource } = await import("../src/engine/byte-source.ts");
    const f = await readGguf(new MemoryByteSource(new Uint8Array(readFileSync(out))));
    expect(["general.architecture", "gemma3.attention.sliding_window", "gemma3.rope.scaling.type", "gemma3.rope.scaling.factor", "gemma3.rope.freq_base_swa"].map((k) => f.metadata.get(k))).toEqual(["gemma3", 8, "linear", 4, 10000]);
    expect(f.tensors.has("blk.0.attn_q_norm.weight") && f.tensors.has("blk.5.post_ffw_norm.weight")).toBe(true);
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
    for (const args of [["--help"], ["tokenize", "--help"], ["generate", "--help"], ["make-test-model", "--help"], ["shard-plan", "--help"], ["deploy", "--help"]]) {
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
    [["make-test-model", "--out", "/tmp/x.gguf", "--shape", "huge"], 2, /--shape must be one of tiny, tiny-gqa, tiny-k, gemma-2b, tiny-gemma2, tiny-gemma3, gemma-2-2b, gemma-3-1b, gemma-3-270m, got "huge"/],
    [["make-test-model", "--out", "/tmp/x.gguf", "--heads", "3", "--kv-heads", "2"], 2, /--heads 3 must be a multiple of --kv-heads 2/],
    [["make-test-model", "--out", "/tmp/x.gguf", "--arch", "llama"], 2, /--arch must be one of gemma, gemma2, gemma3, got "llama"/],
    [["make-test-model", "--out", "/tmp/x.gguf", "--arch", "gemma2", "--shape", "tiny"], 2, /--shape tiny is a gemma shape, not gemma2/],
    [["make-test-model", "--out", "/tmp/x.gguf", "--window", "8"], 2, /--window, --attn-softcap, --final-softcap and --rope-scaling are for --arch gemma2 or gemma3/],
    [["make-test-model", "--out", "/tmp/x.gguf", "--type", "q4_k"], 1, /token_embd\.weight: 128 columns is not a multiple of 256, required by Q4_K/],
    [["bench", "--model", "MODEL", "--rounds", "0"], 2, /--rounds must be an integer >= 1 and <= 1000, got "0"/],
    [["shard-plan", "--model", "MODEL", "--budget-mb", "0"], 2, /--budget-mb must be a number > 0, got "0"/],
    [["shard-plan", "--model", "MODEL", "--budget-mb", "0.2"], 1, /layer 0 does not fit the budget of 0\.20 MB even alone with a 4-token chunk: it needs 0\.\d+ MB .*its largest tensor, blk\.0\.\w+\.weight/],
    [["deploy", "--model-key", "nowhere.gguf", "--dry-run"], 2, /no copy of "nowhere\.gguf" here to read its header from: give --model FILE, or R2_ACCESS_KEY_ID/],
    [["deploy", "--model-key", "m.gguf", "--model", "MODEL", "--prefix", "Bad Name"], 2, /--prefix must be lowercase letters, digits and dashes/],
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

describe("gemma-edge bench", () => {
  it("--rounds: both engines in one process, round by round, and the ratios of those rounds", async () => {
    const r = await run("bench", "--model", model, "--prompt-tokens", "16", "--gen-tokens", "4", "--rounds", "3", "--json");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.match(/^round \d\/3: ours prefill [\d.]+ decode [\d.]+ tok\/s, llama\.cpp [\d.]+ [\d.]+: ratios [\d.]+ [\d.]+$/gm)).toHaveLength(3);
    const j = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    expect(j.rounds).toHaveLength(3);
    const ratios = j.rounds.map((x: { ours: { decode_tok_s: number }; llama_cpp: { decode_tok_s: number } }) => x.ours.decode_tok_s / x.llama_cpp.decode_tok_s).sort((a: number, b: number) => a - b);
    expect(j.ratio_decode).toEqual({ median: ratios[1], min: ratios[0], max: ratios[2] });
    for (const side of [j.ours, j.llama_cpp]) expect(side.decode_tok_s > 0 && side.prefill_tok_s > 0).toBe(true);
    expect(r.stdout).toMatch(/^ratio ours\/llama\.cpp per round, median \(min-max\): decode [\d.]+ \([\d.]+-[\d.]+\), prefill [\d.]+ \([\d.]+-[\d.]+\)$/m);
  });
});

describe("gemma-edge shard-plan and deploy --dry-run", () => {
  it("shard-plan prints the parts for a budget, and --json the same plan with every size", async () => {
    const text = await run("shard-plan", "--model", model, "--budget-mb", "0.7");
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^\d part\(s\) for a budget of 0\.70 MB each, prefill chunks of \d+ tokens, KV for 1 sequence\(s\) of 512 positions\n/);
    const j = JSON.parse((await run("shard-plan", "--model", model, "--budget-mb", "0.7", "--json")).stdout);
    expect(j).toMatchObject({ budget_bytes: 700000, context_size: 512, sequences: 1 });
    // tiny-gqa: 3 layers and 1536 tokens, every part within budget, layers and vocabulary each covered once
    expect(j.parts.flatMap((p: any) => (p.layers ? [p.layers] : []))).toEqual([[0, 1], [1, 2], [2, 3]]);
    const slices = j.parts.filter((p: any) => p.vocab).map((p: any) => p.vocab);
    expect(slices.length).toBeGreaterThanOrEqual(1);
    expect([slices[0][0], slices.at(-1)[1]]).toEqual([0, 1536]);
    slices.slice(1).forEach((v: number[], i: number) => expect(v[0]).toBe(slices[i][1]));
    for (const p of j.parts) expect(p.wasm_memory_bytes).toBeLessThanOrEqual(700000);
    const whole = JSON.parse((await run("shard-plan", "--model", model, "--json", "--context", "64")).stdout);
    expect(whole.parts).toEqual([expect.objectContaining({ index: 0, layers: [0, 3], vocab: [0, 1536] })]);
  });

  it("deploy --dry-run writes one private config per Worker script and builds each bundle, in dependency order", async () => {
    const out = join(dir, "deploy");
    const r = await run("deploy", "--model-key", "m.gguf", "--model", model, "--budget-mb", "0.7", "--dry-run", "--outdir", out);
    expect(r.code).toBe(0);
    const built = [...r.stdout.matchAll(/^built (\S+) +(.+?) +bundle (\d[\d.]* KiB) \/ gzip: ([\d.]+ KiB)$/gm)].map((m) => m[1]);
    const shards = built.filter((n) => n!.includes("-shard-"));
    expect(built.slice(-2)).toEqual(["gemma-edge-coordinator", "gemma-edge"]);
    expect(shards.length).toBeGreaterThanOrEqual(4);
    expect(r.stdout).toMatch(/\d+ Worker scripts built into .*deploy \(nothing deployed\)/);
    for (const n of [...shards, "gemma-edge-coordinator"]) expect(readFileSync(join(out, `${n}.toml`), "utf8")).toMatch(/workers_dev = false\npreview_urls = false/);
    const coordinator = readFileSync(join(out, "gemma-edge-coordinator.toml"), "utf8");
    expect(coordinator).toContain(`SHARD_COUNT = "${shards.length}"`);
    expect(coordinator).toContain('script_name = "gemma-edge-shard-0"');
    expect(readFileSync(join(out, "gemma-edge.toml"), "utf8")).toMatch(/script_name = "gemma-edge-coordinator"[\s\S]*MODEL_KEY = "m\.gguf"/);
  }, 240_000);
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
