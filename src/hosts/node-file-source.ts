// ByteSource over a local file (Node only): positioned reads, into the caller's buffer through a bounce buffer.
import { open, type FileHandle } from "node:fs/promises";
import { checkRange, type ByteSource } from "../engine/byte-source.ts";

export class FileByteSource implements ByteSource {
  private readonly fh: FileHandle;
  readonly name: string;
  readonly size: number;
  private constructor(fh: FileHandle, name: string, size: number) {
    this.fh = fh;
    this.name = name;
    this.size = size;
  }

  static async open(path: string): Promise<FileByteSource> {
    const fh = await open(path, "r");
    const st = await fh.stat();
    if (!st.isFile()) {
      await fh.close();
      throw new Error(`${path}: not a regular file`);
    }
    return new FileByteSource(fh, path, st.size);
  }

  /** Reused for reads into a caller's buffer (see read). */
  private bounce: Uint8Array | undefined;

  /**
   * `length` bytes at `offset`, into `into` when given. Reads into a caller's buffer (a WebAssembly arena) go
   * through a 16 MiB bounce buffer and are copied from JavaScript: pages that the kernel filled by a read straight
   * into the arena cost ~5 us each on their first access afterwards here (1.8 s per 1.4 GB, paid by the first
   * forward pass: it was most of the time to first token), pages written by the copy do not; the copy costs
   * ~0.1 s per GB (docs/performance.md, "The first forward pass").
   */
  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    checkRange(this, offset, length);
    if (!into) {
      const out = new Uint8Array(length);
      await this.readRaw(out, offset, length);
      return out;
    }
    const size = Math.min(length, 16 << 20);
    if (!this.bounce || this.bounce.length < size) this.bounce = new Uint8Array(size);
    const bounce = this.bounce;
    for (let done = 0; done < length; ) {
      const n = Math.min(length - done, bounce.length);
      await this.readRaw(bounce, offset + done, n);
      into.set(bounce.subarray(0, n), done);
      done += n;
    }
    return into;
  }

  private async readRaw(out: Uint8Array, offset: number, length: number): Promise<void> {
    let done = 0;
    // fs reads are capped at 2 GiB per call; large tensors come in pieces.
    while (done < length) {
      const n = Math.min(length - done, 1 << 30);
      const { bytesRead } = await this.fh.read(out, done, n, offset + done);
      if (bytesRead === 0) throw new Error(`${this.name}: unexpected end of file at ${offset + done}`);
      done += bytesRead;
    }
  }

  async close(): Promise<void> {
    this.bounce = undefined;
    await this.fh.close();
  }
}
