// GGUF writer: header, metadata and tensors streamed to a sink one tensor at a time, so that files
// far larger than memory can be written (the layout is the one gguf.ts documents).
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VALUE, type GgufArray, type GgufScalar, type GgufValue } from "./gguf.ts";
import { rowBytes } from "./ggml-types.ts";

export interface TensorToWrite {
  name: string;
  dims: number[];
  type: number;
  /** Produces the tensor's bytes in order, in as many pieces as it likes. */
  data: () => Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
}

export type MetaEntry = { key: string; type: number; value: GgufValue };

const enc = new TextEncoder();

class Bytes {
  private chunks: Uint8Array[] = [];
  length = 0;
  push(b: Uint8Array) {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    this.push(b);
  }
  u64(v: number | bigint) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
    this.push(b);
  }
  str(s: string) {
    const b = enc.encode(s);
    this.u64(b.length);
    this.push(b);
  }
  scalar(type: number, v: GgufScalar) {
    const b = new Uint8Array(8);
    const dv = new DataView(b.buffer);
    switch (type) {
      case GGUF_VALUE.UINT8: dv.setUint8(0, Number(v)); return this.push(b.subarray(0, 1));
      case GGUF_VALUE.INT8: dv.setInt8(0, Number(v)); return this.push(b.subarray(0, 1));
      case GGUF_VALUE.UINT16: dv.setUint16(0, Number(v), true); return this.push(b.subarray(0, 2));
      case GGUF_VALUE.INT16: dv.setInt16(0, Number(v), true); return this.push(b.subarray(0, 2));
      case GGUF_VALUE.UINT32: dv.setUint32(0, Number(v), true); return this.push(b.subarray(0, 4));
      case GGUF_VALUE.INT32: dv.setInt32(0, Number(v), true); return this.push(b.subarray(0, 4));
      case GGUF_VALUE.FLOAT32: dv.setFloat32(0, Number(v), true); return this.push(b.subarray(0, 4));
      case GGUF_VALUE.BOOL: dv.setUint8(0, v ? 1 : 0); return this.push(b.subarray(0, 1));
      case GGUF_VALUE.STRING: return this.str(String(v));
      case GGUF_VALUE.UINT64: dv.setBigUint64(0, BigInt(v), true); return this.push(b);
      case GGUF_VALUE.INT64: dv.setBigInt64(0, BigInt(v), true); return this.push(b);
      case GGUF_VALUE.FLOAT64: dv.setFloat64(0, Number(v), true); return this.push(b);
      default: throw new Error(`cannot write GGUF value type ${type}`);
    }
  }
  concat(): Uint8Array {
    const out = new Uint8Array(this.length);
    let p = 0;
    for (const c of this.chunks) {
      out.set(c, p);
      p += c.length;
    }
    return out;
  }
}

function tensorBytes(t: TensorToWrite): number {
  const n = t.dims.reduce((a, b) => a * b, 1);
  return rowBytes(t.type, t.dims[0]!) * (n / t.dims[0]!);
}

/** Write a GGUF v3 file to `sink`. Returns the number of bytes written. */
export async function writeGguf(
  sink: (bytes: Uint8Array) => void | Promise<void>,
  metadata: MetaEntry[],
  tensors: TensorToWrite[],
  alignment = GGUF_DEFAULT_ALIGNMENT,
): Promise<number> {
  const h = new Bytes();
  h.u32(GGUF_MAGIC);
  h.u32(3);
  h.u64(tensors.length);
  h.u64(metadata.length);
  for (const { key, type, value } of metadata) {
    h.str(key);
    h.u32(type);
    if (type === GGUF_VALUE.ARRAY) {
      const arr = value as GgufArray;
      h.u32(arr.itemType);
      h.u64(arr.items.length);
      for (const item of arr.items) h.scalar(arr.itemType, item);
    } else {
      h.scalar(type, value as GgufScalar);
    }
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    h.str(t.name);
    h.u32(t.dims.length);
    for (const d of t.dims) h.u64(d);
    h.u32(t.type);
    h.u64(offset);
    offsets.push(offset);
    offset += Math.ceil(tensorBytes(t) / alignment) * alignment;
  }
  const pad = (n: number) => new Uint8Array((alignment - (n % alignment)) % alignment);
  h.push(pad(h.length));
  let written = h.length;
  await sink(h.concat());
  for (const t of tensors) {
    const expected = tensorBytes(t);
    let n = 0;
    for await (const chunk of t.data()) {
      n += chunk.length;
      await sink(chunk);
    }
    if (n !== expected) throw new Error(`tensor "${t.name}": wrote ${n} bytes, expected ${expected}`);
    const p = pad(n);
    if (p.length) await sink(p);
    written += n + p.length;
  }
  return written;
}
