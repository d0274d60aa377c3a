// `gemma-edge r2 put`: a model file into R2, the local bucket of wrangler dev or a real one over the S3 API (src/tools/r2.ts).
import { resolve } from "node:path";
import { num, openModelFile as open, parse, required, UsageError, type Command } from "./args.ts";

export const r2Command: Command = {
  name: "r2",
  summary: "put a model file into R2: the local bucket wrangler dev serves, or a real one (S3 API)",
  help: `Usage: gemma-edge r2 put --file FILE --key KEY (--local [--persist DIR] | --remote [--endpoint URL]) [--bucket NAME]

Puts FILE into R2 under KEY, as one object (readers never see half of it). Serve it with
"wrangler dev --var MODEL_KEY:KEY --var MODEL_ID:NAME" (or MODEL=FILE npm start, which does both).

  --local          the local bucket of "wrangler dev"
  --persist DIR    wrangler's state folder (default: .wrangler/state of this project, what "wrangler dev" reads)
  --remote         a real bucket, through R2's S3 multipart API, with a progress bar; a failed or interrupted
                   (Ctrl-C) upload is aborted, leaving nothing behind. Credentials: R2_ACCESS_KEY_ID and
                   R2_SECRET_ACCESS_KEY (an R2 API token's S3 credentials)
  --endpoint URL   S3 endpoint (default R2_ENDPOINT, or https://$CLOUDFLARE_ACCOUNT_ID.r2.cloudflarestorage.com)
  --part-size MIB  MiB per part (default 16, more for files over 160 GB; at least 5)
  --bucket NAME    bucket name (default gemma-edge-models, the MODELS binding of wrangler.toml)`,
  run,
};

async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === "--help" || sub === "-h") return (process.stdout.write(r2Command.help + "\n"), 0);
  if (sub !== "put") throw new UsageError(`unknown r2 command "${sub}" (commands: put)`);
  const { values } = parse(rest, {
    file: { type: "string" }, key: { type: "string" }, local: { type: "boolean" }, persist: { type: "string" }, bucket: { type: "string" },
    remote: { type: "boolean" }, endpoint: { type: "string" }, "part-size": { type: "string" },
  });
  const file = required(values.file, "file");
  const key = required(values.key, "key");
  if (!values.local === !values.remote) throw new UsageError("give one of --local or --remote");
  if (key.length > 1024 || /[\x00-\x1f]/.test(key)) throw new UsageError(`--key must be at most 1024 characters without control characters`);
  const bucket = String(values.bucket ?? "gemma-edge-models");
  if (!/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(bucket)) throw new UsageError(`--bucket "${bucket}" is not a valid R2 bucket name`);
  const src = await open(file); // a clear error for a missing or unreadable file
  const size = src.size;
  await src.close();
  const r2 = await import("../tools/r2.ts");
  const t0 = performance.now();
  const mb = (n: number) => (n / 1e6).toFixed(1);
  if (values.local) {
    await r2.putLocal({ file, key, bucket, persistTo: values.persist === undefined ? undefined : resolve(String(values.persist)) });
    process.stderr.write(`put ${file} (${mb(size)} MB) into local R2 as ${bucket}/${key} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    return 0;
  }
  const env = process.env;
  const endpoint = values.endpoint ?? env.R2_ENDPOINT ?? (env.CLOUDFLARE_ACCOUNT_ID ? `https://${env.CLOUDFLARE_ACCOUNT_ID}.r2.cloudflarestorage.com` : undefined);
  if (!endpoint) throw new UsageError("--remote needs --endpoint, R2_ENDPOINT or CLOUDFLARE_ACCOUNT_ID");
  if (!/^https?:\/\//.test(String(endpoint))) throw new UsageError(`--endpoint must be an http(s) URL, got "${endpoint}"`);
  if (!env.R2_ACCESS_KEY_ID || !env.R2_SECRET_ACCESS_KEY) throw new UsageError("--remote needs R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY in the environment");
  const partMiB = num(values["part-size"], "part-size", { min: 5, max: 5120, int: true });
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  let lastShown = -10;
  const progress = (sent: number, total: number) => {
    const pct = total === 0 ? 100 : Math.floor((sent / total) * 100);
    if (process.stderr.isTTY) {
      const bar = "#".repeat(Math.floor(pct / 4)).padEnd(25, ".");
      process.stderr.write(`\r[${bar}] ${pct}% ${mb(sent)}/${mb(total)} MB`);
    } else if (pct >= lastShown + 10 || sent === total) {
      lastShown = pct;
      process.stderr.write(`${pct}% ${mb(sent)}/${mb(total)} MB\n`);
    }
  };
  try {
    const etag = await r2.putRemote({
      file, key, bucket, endpoint: String(endpoint), accessKeyId: env.R2_ACCESS_KEY_ID, secretAccessKey: env.R2_SECRET_ACCESS_KEY,
      partSize: partMiB === undefined ? undefined : partMiB * 2 ** 20, onProgress: progress, signal: ac.signal,
    });
    if (process.stderr.isTTY) process.stderr.write("\n");
    process.stderr.write(`put ${file} (${mb(size)} MB) into R2 as ${bucket}/${key} (etag ${etag}) in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    return 0;
  } catch (e) {
    if (process.stderr.isTTY) process.stderr.write("\n");
    throw new Error(`${(e as Error).message}; nothing was stored under ${bucket}/${key}`);
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
}
