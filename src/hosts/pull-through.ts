// The pull-through cache: a model missing from R2 is streamed from its configured source (e.g. a Hugging Face
// "resolve" URL) into R2 with a multipart upload, 16 MiB in memory at a time, and its SHA-256 checked on the way.
// The object becomes visible under its key only when the upload completes, which happens only after the whole
// file arrived with the expected length and hash; any failure aborts the upload, leaving nothing under the key.
import type { R2Bucket, R2UploadedPart } from "@cloudflare/workers-types";

export interface ModelSource {
  url: string;
  /** The whole Authorization header value (e.g. "Bearer hf_..."), from a secret. */
  authorization?: string;
  /** Expected SHA-256 of the file, hex. */
  sha256?: string;
}

/** R2 multipart parts: all but the last the same size, at least 5 MiB. */
const PART_SIZE = 16 << 20;

type DigestStreamCtor = new (algorithm: string) => WritableStream<Uint8Array> & { digest: Promise<ArrayBuffer> };

const hex = (b: ArrayBuffer) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");

export async function pullIntoR2(bucket: R2Bucket, key: string, source: ModelSource, onProgress?: (received: number, total: number) => void): Promise<void> {
  const want = source.sha256?.trim().toLowerCase();
  if (want !== undefined && !/^[0-9a-f]{64}$/.test(want)) throw new Error(`the configured SHA-256 "${source.sha256}" is not 64 hex digits`);
  let res: Response;
  try {
    res = await fetch(source.url, { headers: source.authorization ? { Authorization: source.authorization } : {} });
  } catch (e) {
    throw new Error(`cannot download the model from ${source.url}: ${(e as Error).message}`);
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new Error(`downloading the model from ${source.url} failed: HTTP ${res.status}`);
  }
  const length = Number(res.headers.get("content-length") ?? NaN);
  const total = Number.isFinite(length) ? length : 0;
  // workerd's streaming digest (crypto.subtle.digest would need the whole file in memory)
  const DigestStream = (crypto as unknown as { DigestStream?: DigestStreamCtor }).DigestStream;
  if (want && !DigestStream) throw new Error("this runtime has no crypto.DigestStream to check the model's SHA-256");
  const digest = want && DigestStream ? new DigestStream("SHA-256") : undefined;
  const hashWriter = digest?.getWriter();

  const upload = await bucket.createMultipartUpload(key);
  const parts: R2UploadedPart[] = [];
  const part = new Uint8Array(PART_SIZE);
  let fill = 0;
  let received = 0;
  const flush = async () => {
    parts.push(await upload.uploadPart(parts.length + 1, part.slice(0, fill)));
    fill = 0;
  };
  try {
    const reader = res.body.getReader();
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (e) {
        throw new Error(`the download from ${source.url} broke off after ${received} of ${total || "?"} bytes: ${(e as Error).message}`);
      }
      if (chunk.done) break;
      const value = chunk.value;
      received += value.length;
      if (total && received > total) throw new Error(`${source.url} sent more than its Content-Length of ${total} bytes`);
      await hashWriter?.write(value);
      for (let off = 0; off < value.length; ) {
        const n = Math.min(PART_SIZE - fill, value.length - off);
        part.set(value.subarray(off, off + n), fill);
        fill += n;
        off += n;
        if (fill === PART_SIZE) await flush();
      }
      onProgress?.(received, total);
    }
    if (total && received !== total) throw new Error(`the download from ${source.url} broke off after ${received} of ${total} bytes`);
    if (fill > 0 || parts.length === 0) await flush();
    if (hashWriter && digest) {
      await hashWriter.close();
      const got = hex(await digest.digest);
      if (got !== want) throw new Error(`the file downloaded from ${source.url} has SHA-256 ${got}, not the configured ${want}`);
    }
    await upload.complete(parts);
  } catch (e) {
    await upload.abort().catch(() => {});
    throw new Error(`${(e as Error).message}; nothing was stored under "${key}" (a later request retries)`);
  }
}
