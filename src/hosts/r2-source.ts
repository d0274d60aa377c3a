// ByteSource over an R2 object: range reads streamed straight into the destination (WebAssembly memory),
// never the whole file in the JS heap.
import type { R2Bucket } from "@cloudflare/workers-types";
import type { ModelFiles } from "../service/contract.ts";
import { checkRange, ByteSourceError, type ByteSource } from "../engine/byte-source.ts";

export class R2ByteSource implements ByteSource {
  readonly name: string;
  readonly size: number;
  readonly etag: string;
  private readonly bucket: R2Bucket;

  private constructor(bucket: R2Bucket, key: string, size: number, etag: string) {
    this.bucket = bucket;
    this.name = `r2://${key}`;
    this.size = size;
    this.etag = etag;
  }

  static async open(bucket: R2Bucket, key: string): Promise<R2ByteSource> {
    const head = await bucket.head(key);
    if (!head) throw new ByteSourceError(`R2 object "${key}" was not found in the model bucket`);
    return new R2ByteSource(bucket, key, head.size, head.etag);
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    checkRange(this, offset, length);
    const out = into ?? new Uint8Array(length);
    if (length === 0) return out;
    const key = this.name.slice("r2://".length);
    const obj = await this.bucket.get(key, { range: { offset, length } });
    if (!obj || !("body" in obj)) throw new ByteSourceError(`${this.name}: the object disappeared while it was being read`);
    const reader = obj.body.getReader();
    let pos = 0;
    let sinceYield = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      // chunks of a local object arrive without a pause: let other requests (health probes) in now and then
      sinceYield += value.length;
      if (sinceYield >= 16 << 20) {
        sinceYield = 0;
        await new Promise((r) => setTimeout(r, 0));
      }
      if (pos + value.length > length) {
        await reader.cancel();
        throw new ByteSourceError(`${this.name}: R2 sent more than the ${length} bytes asked for at offset ${offset}`);
      }
      out.set(value, pos);
      pos += value.length;
    }
    if (pos !== length) throw new ByteSourceError(`${this.name}: range read at ${offset} ended after ${pos} of ${length} bytes`);
    return out;
  }
}

/** The model file as the app's GET /v1/models/{id}/gguf serves it, from R2. */
export function r2ModelFiles(bucket: R2Bucket, key: string): ModelFiles {
  return {
    async stat() {
      const head = await bucket.head(key);
      return head ? { size: head.size, etag: head.etag } : null;
    },
    async read(offset, length) {
      const obj = await bucket.get(key, { range: { offset, length } });
      if (!obj || !("body" in obj)) throw new ByteSourceError(`r2://${key}: the object disappeared while it was being read`);
      return obj.body as unknown as ReadableStream<Uint8Array>;
    },
  };
}
