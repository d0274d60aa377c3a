// Putting model files into R2. Local: the bucket `wrangler dev` serves from (its persisted state folder), through
// wrangler's own `r2 object put --local`, so the object lands exactly where the Worker's R2 binding reads it.
// Remote (R2's S3 multipart API) is not written yet.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";

/** The bucket of wrangler.toml's MODELS binding. */
export const MODELS_BUCKET = "gemma-edge-models";
/** The project folder (wrangler.toml); wrangler dev keeps local state in `.wrangler/state` under it. */
export const PROJECT_ROOT = resolve(import.meta.dirname, "../..");

export interface LocalPut {
  file: string;
  key: string;
  bucket?: string;
  /** wrangler's persist folder (`--persist-to`); default the project's `.wrangler/state`, which `wrangler dev` uses. */
  persistTo?: string;
}

/** Runs wrangler from this package's own dependency (no PATH lookup, no network: metrics and cf fetch off). */
export function runWrangler(args: string[], stdio: "inherit" | "pipe" = "inherit"): Promise<{ code: number; stdout: string; stderr: string }> {
  const pkg = createRequire(import.meta.url).resolve("wrangler/package.json");
  const bin = resolve(dirname(pkg), "bin/wrangler.js");
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: PROJECT_ROOT,
      stdio: ["ignore", stdio === "inherit" ? "ignore" : "pipe", stdio],
      env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" },
    });
    let stdout = "", stderr = "";
    child.stdout?.on("data", (d) => (stdout += d));
    child.stderr?.on("data", (d) => (stderr += d));
    child.on("error", rej);
    child.on("exit", (code, signal) => res({ code: code ?? (signal ? 1 : 0), stdout, stderr }));
  });
}

/** Puts a file into the local R2 bucket; throws naming wrangler's exit code (its own message went to stderr). */
export async function putLocal(o: LocalPut): Promise<void> {
  const args = ["r2", "object", "put", `${o.bucket ?? MODELS_BUCKET}/${o.key}`, "--file", o.file, "--local"];
  if (o.persistTo) args.push("--persist-to", o.persistTo);
  const r = await runWrangler(args);
  if (r.code !== 0) throw new Error(`wrangler r2 object put exited with ${r.code}`);
}
