// `npm run bench`: makes the Gemma-2B-shape Q4_0 file once (models/, outside git), measures our engine and
// llama.cpp on it alternately (gemma-edge bench --vs-llama-cpp), and writes the table into docs/performance.md's
// performance section and the chart into docs/bench.svg.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { resolve } from "node:path";
import type { BenchResult, RunFigures } from "../src/tools/bench.ts";

const root = resolve(import.meta.dirname, "..");
const model = resolve(root, "models/gemma-2b-shape-q4_0.gguf");
const args = { prompt: 128, gen: 64, threads: 1, repeats: Number(process.env.REPEATS ?? 3) };
const cli = (a: string[], capture: boolean) =>
  new Promise<string>((ok, fail) => {
    const p = spawn(process.execPath, [resolve(root, "bin/gemma-edge.js"), ...a], { stdio: ["ignore", capture ? "pipe" : "inherit", "inherit"] });
    let out = "";
    p.stdout?.on("data", (d) => {
      out += d;
      process.stdout.write(d);
    });
    p.on("exit", (code) => (code === 0 ? ok(out) : fail(new Error(`gemma-edge ${a[0]} exited with ${code}`))));
  });

// BENCH_JSON=file redraws the table and chart from a saved `gemma-edge bench --json` line instead of measuring
let out: string;
if (process.env.BENCH_JSON) {
  out = readFileSync(process.env.BENCH_JSON, "utf8");
} else {
  if (!existsSync(model)) {
    mkdirSync(resolve(root, "models"), { recursive: true });
    await cli(["make-test-model", "--out", model, "--shape", "gemma-2b", "--type", "q4_0"], false);
  }
  out = await cli(["bench", "--model", model, "--prompt-tokens", String(args.prompt), "--gen-tokens", String(args.gen), "--threads", String(args.threads), "--repeats", String(args.repeats), "--vs-llama-cpp", "--json"], true);
  mkdirSync(resolve(root, "docs"), { recursive: true });
  writeFileSync(resolve(root, "docs/bench.json"), out.trim().split("\n").at(-1)! + "\n");
}
const r = JSON.parse(out.trim().split("\n").at(-1)!) as BenchResult;
Object.assign(args, { prompt: r.options.promptTokens, gen: r.options.genTokens, threads: r.options.threads, repeats: r.options.repeats });
const them = r.llama_cpp!;

type Key = keyof RunFigures;
const range = (runs: RunFigures[], k: Key) => {
  const v = runs.map((x) => x[k]);
  return [Math.min(...v), Math.max(...v)] as const;
};
const cell = (med: number, runs: RunFigures[], k: Key, digits: number) => {
  const [lo, hi] = range(runs, k);
  return `${med.toFixed(digits)} (${lo.toFixed(digits)}–${hi.toFixed(digits)})`;
};
const rows: [string, Key, number, boolean][] = [
  ["decode, tok/s", "decode_tok_s", 2, true],
  [`prefill of ${args.prompt} tokens, tok/s`, "prefill_tok_s", 2, true],
  ["time to first token, 16-token prompt, s", "ttft_s", 3, false],
  ["load, s", "load_s", 2, false],
  ["peak RSS, MB", "peak_rss_mb", 0, false],
];
const spread = (runs: RunFigures[], k: Key, med: number) => {
  const [lo, hi] = range(runs, k);
  return (hi - lo) / med;
};
const noise = Math.max(...(["decode_tok_s", "prefill_tok_s"] as Key[]).flatMap((k) => [spread(r.runs, k, r[k]), spread(them.runs, k, them[k])]));
const table = [
  `| ${args.threads} thread, ${args.repeats} alternating runs each | gemma-edge (median, min–max) | llama.cpp (median, min–max) | ours / llama.cpp |`,
  "|---|---|---|---|",
  ...rows.map(([name, k, dg, higherBetter]) => `| ${name} | ${cell(r[k], r.runs, k, dg)} | ${cell(them[k], them.runs, k, dg)} | ${(higherBetter ? r[k] / them[k] : them[k] / r[k]).toFixed(2)}${higherBetter ? "" : " (inverse)"} |`),
].join("\n");
const cpu = cpus()[0]?.model ?? "unknown CPU";
const section = `<!-- bench:start -->
Gemma-2B-shape GGUF (generated, Q4_0, ${(1416.3).toFixed(1)} MB), prompt ${args.prompt} tokens, ${args.gen} generated, ${cpu},
${new Date().toISOString().slice(0, 10)}. Ratios are of medians (for time and memory the inverse, so that higher is better).
The largest spread between runs (max − min over median) was ${(noise * 100).toFixed(0)}%: the machine is shared and noisy.

${table}

![decode and prefill, ours vs llama.cpp](bench.svg)

Reproduce: \`npm run bench\` (table and chart), or \`npx gemma-edge bench --model models/gemma-2b-shape-q4_0.gguf --prompt-tokens ${args.prompt} --gen-tokens ${args.gen} --threads ${args.threads} --vs-llama-cpp --json\`.
<!-- bench:end -->`;

const readmePath = resolve(root, "docs/performance.md");
const readme = readFileSync(readmePath, "utf8");
const re = /<!-- bench:start -->[\s\S]*<!-- bench:end -->/;
writeFileSync(readmePath, re.test(readme) ? readme.replace(re, section) : readme + `\n${section}\n`);

// chart: decode and prefill, medians as bars, min–max as whiskers
const groups: [string, Key][] = [["decode tok/s", "decode_tok_s"], ["prefill tok/s", "prefill_tok_s"]];
const max = Math.max(...groups.flatMap(([, k]) => [range(r.runs, k)[1], range(them.runs, k)[1]])) * 1.15;
const W = 560, H = 260, left = 50, bottom = 220, barW = 64, gap = 36;
const y = (v: number) => bottom - (v / max) * 180;
let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n`;
svg += `<line x1="${left}" y1="${bottom}" x2="${W - 10}" y2="${bottom}" stroke="black"/>\n`;
groups.forEach(([label, k], gi) => {
  const x0 = left + 30 + gi * 250;
  ([["gemma-edge", r, "#2b7bb9"], ["llama.cpp", them, "#d9822b"]] as const).forEach(([name, f, color], i) => {
    const x = x0 + i * (barW + gap);
    const [lo, hi] = range(f.runs, k);
    svg += `<rect x="${x}" y="${y(f[k]).toFixed(1)}" width="${barW}" height="${(bottom - y(f[k])).toFixed(1)}" fill="${color}"/>\n`;
    svg += `<line x1="${x + barW / 2}" y1="${y(lo).toFixed(1)}" x2="${x + barW / 2}" y2="${y(hi).toFixed(1)}" stroke="black"/>\n`;
    svg += `<text x="${x + barW / 2}" y="${(y(hi) - 6).toFixed(1)}" text-anchor="middle">${f[k].toFixed(1)}</text>\n`;
    svg += `<text x="${x + barW / 2}" y="${bottom + 14}" text-anchor="middle">${name}</text>\n`;
  });
  svg += `<text x="${x0 + barW + gap / 2}" y="${bottom + 32}" text-anchor="middle" font-weight="bold">${label}</text>\n`;
});
svg += `<text x="${W / 2}" y="18" text-anchor="middle">Gemma-2B shape, Q4_0, 1 thread (median, min–max)</text>\n</svg>\n`;
mkdirSync(resolve(root, "docs"), { recursive: true });
writeFileSync(resolve(root, "docs/bench.svg"), svg);
process.stdout.write(`\nwrote the measured section of docs/performance.md and docs/bench.svg\n`);
