// What every command of the `gemma-edge` CLI shares: argument parsing with one clear message per bad flag
// (exit code 2), numbers checked against their ranges, and opening a model file.
import { parseArgs, type ParseArgsConfig } from "node:util";
import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { BACKEND_NAMES } from "../hosts/node-backend.ts";
import { FileByteSource } from "../hosts/node-file-source.ts";

/** A bad command line: main() prints it with "(see --help)" and exits with 2. */
export class UsageError extends Error {}

export type Values = Record<string, string | boolean | string[] | undefined>;

export function parse(args: string[], options: NonNullable<ParseArgsConfig["options"]>): { values: Values } {
  try {
    const { values } = parseArgs({ args, options: { ...options, help: { type: "boolean", short: "h" } }, allowPositionals: false, strict: true });
    return { values: values as Values };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export function num(v: unknown, flag: string, { min = -Infinity, max = Infinity, int = false, above = false } = {}): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  const low = above ? n <= min : n < min;
  if (typeof v !== "string" || v.trim() === "" || !Number.isFinite(n) || (int && !Number.isInteger(n)) || low || n > max) {
    const range = `${min > -Infinity ? ` ${above ? ">" : ">="} ${min}` : ""}${max < Infinity ? ` and <= ${max}` : ""}`;
    throw new UsageError(`--${flag} must be ${int ? "an integer" : "a number"}${range}, got "${String(v)}"`);
  }
  return n;
}

export function required(v: unknown, flag: string): string {
  if (typeof v !== "string" || v === "") throw new UsageError(`--${flag} is required`);
  return v;
}

export async function openModelFile(path: string): Promise<FileByteSource> {
  try {
    return await FileByteSource.open(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(err.code === "ENOENT" ? `model file not found: ${path}` : `cannot open ${path}: ${err.message}`);
  }
}

/** One command: its name, a line for the command list, its help text, and what it does (an exit code). */
export interface Command {
  name: string;
  summary: string;
  help: string;
  run(args: string[]): Promise<number>;
}

/** --backend (one of BACKEND_NAMES, default wasm) and --threads (default 1), checked before any file is opened. */
export function engineOptions(values: { backend?: unknown; threads?: unknown }): { backend: string; threads: number } {
  const backend = String(values.backend ?? "wasm");
  if (!BACKEND_NAMES.includes(backend)) throw new UsageError(`--backend must be one of ${BACKEND_NAMES.join(", ")}, got "${backend}"`);
  return { backend, threads: num(values.threads, "threads", { min: 1, max: 256, int: true }) ?? 1 };
}

/**
 * Write a file through a sink that waits for the stream to drain; the first write error rejects. A failure removes
 * the file: never half a file left behind.
 */
export async function writeFileStreaming(path: string, produce: (sink: (b: Uint8Array) => Promise<void>) => Promise<number>): Promise<number> {
  const file = createWriteStream(path);
  const failed = new Promise<never>((_, reject) => file.on("error", reject));
  failed.catch(() => {}); // observed below; not an unhandled rejection when nothing is racing it
  const write = (b: Uint8Array) => Promise.race([failed, new Promise<void>((res) => (file.write(b) ? res() : file.once("drain", () => res())))]);
  try {
    const size = await produce(write);
    await Promise.race([failed, new Promise<void>((res) => file.end(() => res()))]);
    return size;
  } catch (e) {
    file.destroy();
    await rm(path, { force: true });
    throw e;
  }
}
