// ByteSource over a local file (Node only): positioned reads straight into the caller's buffer.
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

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    checkRange(this, offset, length);
    const out = into ?? new Uint8Array(length);
    let done = 0;
    // fs reads are capped at 2 GiB per call; large tensors come in pieces.
    while (done < length) {
      const n = Math.min(length - done, 1 << 30);
      const { bytesRead } = await this.fh.read(out, done, n, offset + done);
      if (bytesRead === 0) throw new Error(`${this.name}: unexpected end of file at ${offset + done}`);
      done += bytesRead;
    }
    return out;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
