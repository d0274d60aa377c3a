// Putting model files into R2. Local: the bucket `wrangler dev` serves from (its persisted state folder), through
// wrangler's own `r2 object put --local`, so the object lands exactly where the Worker's R2 binding reads it.
// Remote: R2's S3-compatible multipart API (SigV4 by aws4fetch), one part in memory at a time; a failed or
// interrupted upload is aborted, so nothing (not even invisible parts) is left behind and the key never holds half
// a file: the object appears only when the upload completes.
import { spawn } from "node:child_process";
import { open } from "node:fs/promises";
import { AwsClient } from "aws4fetch";
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

export interface RemotePut {
  file: string;
  key: string;
  bucket: string;
  /** S3 endpoint, e.g. https://ACCOUNT_ID.r2.cloudflarestorage.com (path-style: endpoint/bucket/key). */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Bytes per part (R2: at least 5 MiB, all parts but the last the same size); default 16 MiB or more for big files. */
  partSize?: number;
  onProgress?: (sent: number, total: number) => void;
  /** Called with the multipart upload's id once R2 has created it. */
  onStart?: (uploadId: string) => void;
  signal?: AbortSignal;
}

const MiB = 1 << 20;
export const MIN_PART_SIZE = 5 * MiB;
const MAX_PARTS = 10_000;
const RETRIES = 3;

/** Reads one XML element's text from an S3 response (the answers are flat and small). */
function xmlText(xml: string, tag: string): string | undefined {
  const m = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml);
  return m?.[1]?.replace(/&quot;/g, '"').replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&apos;/g, "'").replace(/&amp;/g, "&");
}

async function s3Error(op: string, r: Response): Promise<Error> {
  const body = await r.text().catch(() => "");
  const code = xmlText(body, "Code"), msg = xmlText(body, "Message");
  return new Error(`R2 ${op} failed: HTTP ${r.status}${code ? ` ${code}` : ""}${msg ? `: ${msg}` : ""}`);
}

/** Uploads a file to R2 with the S3 multipart API; returns the object's etag. */
export async function putRemote(o: RemotePut): Promise<string> {
  const client = new AwsClient({ accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey, service: "s3", region: "auto", retries: 0 });
  const url = `${o.endpoint.replace(/\/+$/, "")}/${encodeURIComponent(o.bucket)}/${o.key.split("/").map(encodeURIComponent).join("/")}`;
  const fh = await open(o.file);
  try {
    const size = (await fh.stat()).size;
    const partSize = o.partSize ?? Math.max(16 * MiB, Math.ceil(size / MAX_PARTS / MiB) * MiB);
    if (partSize < MIN_PART_SIZE) throw new Error(`part size must be at least ${MIN_PART_SIZE} bytes, got ${partSize}`);
    if (Math.ceil(size / partSize) > MAX_PARTS) throw new Error(`${size} bytes in parts of ${partSize} is more than ${MAX_PARTS} parts`);
    const send = (u: string, init: RequestInit) =>
      client.fetch(u, { ...init, signal: o.signal }).catch((e: Error & { cause?: { code?: string; message?: string } }) => {
        if (o.signal?.aborted) throw new Error("upload interrupted");
        throw new Error(`cannot reach the R2 endpoint ${o.endpoint}: ${e.cause?.code ?? e.cause?.message ?? e.message}`);
      });

    let r = await send(`${url}?uploads`, { method: "POST" });
    if (!r.ok) throw await s3Error("CreateMultipartUpload", r);
    const uploadId = xmlText(await r.text(), "UploadId");
    if (!uploadId) throw new Error("R2 CreateMultipartUpload answered without an UploadId");
    const q = `uploadId=${encodeURIComponent(uploadId)}`;
    o.onStart?.(uploadId);
    try {
      const etags: string[] = [];
      const buf = new Uint8Array(Math.min(partSize, Math.max(size, 1)));
      o.onProgress?.(0, size);
      for (let off = 0, n = 1; off < size || n === 1; off += partSize, n++) {
        const len = Math.min(partSize, size - off);
        const { bytesRead } = await fh.read(buf, 0, len, off);
        if (bytesRead !== len) throw new Error(`${o.file} changed while uploading (short read at byte ${off})`);
        for (let attempt = 1; ; attempt++) {
          if (o.signal?.aborted) throw new Error("upload interrupted");
          try {
            r = await send(`${url}?partNumber=${n}&${q}`, { method: "PUT", body: buf.subarray(0, len) });
            if (r.ok) break;
            const err = await s3Error(`UploadPart ${n}`, r);
            if (r.status < 500 || attempt >= RETRIES) throw err;
          } catch (e) {
            if (o.signal?.aborted || attempt >= RETRIES || !(e as Error).message.startsWith("cannot reach")) throw e;
          }
          await new Promise((res) => setTimeout(res, 500 * attempt));
        }
        const etag = r.headers.get("etag");
        if (!etag) throw new Error(`R2 UploadPart ${n} answered without an ETag`);
        etags.push(etag);
        o.onProgress?.(off + len, size);
        if (size === 0) break;
      }
      const xml = `<CompleteMultipartUpload>${etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`).join("")}</CompleteMultipartUpload>`;
      r = await send(`${url}?${q}`, { method: "POST", body: xml, headers: { "content-type": "application/xml" } });
      const body = await r.text();
      if (!r.ok || xmlText(body, "Code")) throw new Error(`R2 CompleteMultipartUpload failed: HTTP ${r.status} ${xmlText(body, "Code") ?? ""}: ${xmlText(body, "Message") ?? body.slice(0, 200)}`);
      return xmlText(body, "ETag") ?? "";
    } catch (e) {
      // clean up: the parts would otherwise be kept (and billed) until the bucket's lifecycle rule removes them
      await client.fetch(`${url}?${q}`, { method: "DELETE" }).catch(() => undefined);
      throw e;
    }
  } finally {
    await fh.close();
  }
}
