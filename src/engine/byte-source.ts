// Where model bytes come from. The GGUF reader and the loader only ever ask for byte ranges,
// so a file, a buffer in memory, an HTTP server with range support or an R2 bucket all look alike.

export interface ByteSource {
  /** Total size in bytes. */
  readonly size: number;
  /** A name for error messages (a path, a URL, an R2 key). */
  readonly name: string;
  /**
   * Read `length` bytes at `offset`. When `into` is given the bytes are written there (it must be exactly
   * `length` long; used to read tensor data straight into WebAssembly memory) and `into` is returned.
   */
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  close?(): Promise<void>;
}

export class ByteSourceError extends Error {
  override name = "ByteSourceError";
}

export function checkRange(src: { size: number; name: string }, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new ByteSourceError(`${src.name}: invalid byte range offset=${offset} length=${length}`);
  }
  if (offset + length > src.size) {
    throw new ByteSourceError(
      `${src.name}: read of ${length} bytes at offset ${offset} goes past the end (size ${src.size} bytes); the file is truncated`,
    );
  }
}

/** Bytes already in memory (tests, generated models, browser uploads). */
export class MemoryByteSource implements ByteSource {
  readonly size: number;
  private readonly bytes: Uint8Array;
  readonly name: string;
  constructor(bytes: Uint8Array, name: string = "memory") {
    this.bytes = bytes;
    this.name = name;
    this.size = bytes.length;
  }
  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    checkRange(this, offset, length);
    const view = this.bytes.subarray(offset, offset + length);
    if (!into) return view;
    into.set(view);
    return into;
  }
}

/** An HTTP(S) server that answers Range requests (a CDN, object storage, a worker route). */
export class HttpByteSource implements ByteSource {
  readonly name: string;
  readonly size: number;
  private readonly headers: Record<string, string>;
  private readonly fetch: typeof fetch;
  private constructor(name: string, size: number, headers: Record<string, string>, f: typeof fetch) {
    this.name = name;
    this.size = size;
    this.headers = headers;
    this.fetch = f;
  }

  /** `f`: the fetch to use (e.g. one that signs requests for an S3 API); default the global one. */
  static async open(url: string, headers: Record<string, string> = {}, f: typeof fetch = (...a) => fetch(...a)): Promise<HttpByteSource> {
    const res = await f(url, { method: "HEAD", headers });
    if (!res.ok) throw new ByteSourceError(`${url}: HEAD answered HTTP ${res.status}`);
    const len = Number(res.headers.get("content-length"));
    if (!Number.isSafeInteger(len) || len <= 0) {
      throw new ByteSourceError(`${url}: HEAD gave no usable Content-Length`);
    }
    return new HttpByteSource(url, len, headers, f);
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    checkRange(this, offset, length);
    const out = into ?? new Uint8Array(length);
    if (length === 0) return out;
    const res = await this.fetch(this.name, {
      headers: { ...this.headers, Range: `bytes=${offset}-${offset + length - 1}` },
    });
    if (res.status !== 206) {
      await res.body?.cancel();
      throw new ByteSourceError(`${this.name}: range request answered HTTP ${res.status}, expected 206`);
    }
    if (!res.body) throw new ByteSourceError(`${this.name}: range response has no body`);
    let pos = 0;
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (pos + value.length > length) {
        await reader.cancel();
        throw new ByteSourceError(`${this.name}: server sent more than the ${length} bytes asked for`);
      }
      out.set(value, pos);
      pos += value.length;
    }
    if (pos !== length) {
      throw new ByteSourceError(`${this.name}: range response ended after ${pos} of ${length} bytes`);
    }
    return out;
  }
}
