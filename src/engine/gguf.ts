// GGUF reader (format: ggml include/gguf.h, src/gguf.cpp).
//
//   magic "GGUF" | u32 version (2 or 3) | u64 n_tensors | u64 n_kv
//   n_kv x { string key | u32 value type | value }           strings: u64 length + UTF-8 bytes
//   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml type | u64 offset }
//   padding to general.alignment (default 32) | tensor data (each tensor at data start + offset)
//
// The header is parsed from a prefix of the file (read again with a bigger prefix when it does not
// fit); every length is bounded and every error names what was being read. Tensor data is never read
// here: callers read each tensor's byte range from the ByteSource straight into its destination.
import type { ByteSource } from "./byte-source.ts";
import { ggmlTypeName, isSupportedType, rowBytes } from "./ggml-types.ts";

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_DEFAULT_ALIGNMENT = 32;

export const GGUF_VALUE = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue = GgufScalar | GgufArray;
/** Arrays keep their element type so that a writer can reproduce them. */
export interface GgufArray {
  itemType: number;
  items: GgufScalar[] | Float32Array | Int32Array | Uint8Array;
}

export interface GgufTensorInfo {
  name: string;
  /** ne[0] is the row length (fastest-varying), as in ggml. */
  dims: number[];
  type: number;
  /** Absolute offset of the tensor data in the file. */
  offset: number;
  nbytes: number;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, GgufValue>;
  /** Value types of the metadata entries, for writers that copy them. */
  metadataTypes: Map<string, number>;
  tensors: Map<string, GgufTensorInfo>;
  alignment: number;
  dataOffset: number;
  size: number;
}

export class GgufError extends Error {
  override name = "GgufError";
}

class NeedMore extends Error {}

const MAX_STRING = 1 << 26; // 64 MiB: far beyond any key, token or template
const MAX_ARRAY = 1 << 28;
const MAX_DIMS = 4;

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

class Cursor {
  pos = 0;
  readonly view: DataView;
  readonly bytes: Uint8Array;
  private readonly complete: boolean;
  private readonly fileSize: number;
  private readonly fileName: string;
  constructor(bytes: Uint8Array, complete: boolean, fileSize: number, fileName: string) {
    this.bytes = bytes;
    this.complete = complete;
    this.fileSize = fileSize;
    this.fileName = fileName;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  need(n: number, what: string): void {
    if (this.pos + n <= this.bytes.length) return;
    if (!this.complete) throw new NeedMore();
    throw new GgufError(
      `${this.fileName}: truncated GGUF header: reading ${what} needs ${n} bytes at offset ${this.pos}, file is ${this.fileSize} bytes`,
    );
  }
  u8(what: string): number {
    this.need(1, what);
    return this.bytes[this.pos++]!;
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  u64(what: string): number {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new GgufError(`${this.fileName}: ${what} is too large (${v})`);
    return Number(v);
  }
  string(what: string): string {
    const len = this.u64(`length of ${what}`);
    if (len > MAX_STRING) throw new GgufError(`${this.fileName}: ${what} claims ${len} bytes (limit ${MAX_STRING})`);
    this.need(len, what);
    const s = this.bytes.subarray(this.pos, this.pos + len);
    this.pos += len;
    try {
      return decoder.decode(s);
    } catch {
      throw new GgufError(`${this.fileName}: ${what} is not valid UTF-8`);
    }
  }
  scalar(type: number, what: string): GgufScalar {
    const v = this.view;
    const take = (n: number) => {
      this.need(n, what);
      const p = this.pos;
      this.pos += n;
      return p;
    };
    switch (type) {
      case GGUF_VALUE.UINT8: return v.getUint8(take(1));
      case GGUF_VALUE.INT8: return v.getInt8(take(1));
      case GGUF_VALUE.UINT16: return v.getUint16(take(2), true);
      case GGUF_VALUE.INT16: return v.getInt16(take(2), true);
      case GGUF_VALUE.UINT32: return v.getUint32(take(4), true);
      case GGUF_VALUE.INT32: return v.getInt32(take(4), true);
      case GGUF_VALUE.FLOAT32: return v.getFloat32(take(4), true);
      case GGUF_VALUE.BOOL: {
        const b = v.getUint8(take(1));
        if (b > 1) throw new GgufError(`${this.fileName}: ${what} is a bool with value ${b}`);
        return b === 1;
      }
      case GGUF_VALUE.STRING: return this.string(what);
      case GGUF_VALUE.UINT64: return v.getBigUint64(take(8), true);
      case GGUF_VALUE.INT64: return v.getBigInt64(take(8), true);
      case GGUF_VALUE.FLOAT64: return v.getFloat64(take(8), true);
      default:
        throw new GgufError(`${this.fileName}: ${what} has unknown value type ${type}`);
    }
  }
  array(what: string): GgufArray {
    const itemType = this.u32(`element type of ${what}`);
    const n = this.u64(`length of ${what}`);
    if (n > MAX_ARRAY) throw new GgufError(`${this.fileName}: ${what} claims ${n} elements (limit ${MAX_ARRAY})`);
    if (itemType === GGUF_VALUE.ARRAY) throw new GgufError(`${this.fileName}: ${what} is a nested array (unsupported)`);
    // Numeric arrays of the vocab (scores, token types) become typed arrays: fast and compact.
    if (itemType === GGUF_VALUE.FLOAT32 || itemType === GGUF_VALUE.INT32 || itemType === GGUF_VALUE.UINT8) {
      const width = itemType === GGUF_VALUE.UINT8 ? 1 : 4;
      this.need(n * width, what);
      const out = itemType === GGUF_VALUE.FLOAT32 ? new Float32Array(n) : itemType === GGUF_VALUE.INT32 ? new Int32Array(n) : new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        out[i] = itemType === GGUF_VALUE.FLOAT32 ? this.view.getFloat32(this.pos + 4 * i, true)
          : itemType === GGUF_VALUE.INT32 ? this.view.getInt32(this.pos + 4 * i, true)
          : this.bytes[this.pos + i]!;
      }
      this.pos += n * width;
      return { itemType, items: out };
    }
    const items: GgufScalar[] = new Array(n);
    for (let i = 0; i < n; i++) items[i] = this.scalar(itemType, `${what}[${i}]`);
    return { itemType, items };
  }
}

function parseHeader(bytes: Uint8Array, complete: boolean, fileSize: number, fileName: string): GgufFile {
  const c = new Cursor(bytes, complete, fileSize, fileName);
  c.need(4, "magic");
  const magic = c.u32("magic");
  if (magic !== GGUF_MAGIC) {
    const shown = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join(" ");
    throw new GgufError(`${fileName}: not a GGUF file (magic bytes ${shown}, expected 47 47 55 46 "GGUF")`);
  }
  const version = c.u32("version");
  if (version !== 2 && version !== 3) {
    throw new GgufError(`${fileName}: unsupported GGUF version ${version} (supported: 2, 3)`);
  }
  const nTensors = c.u64("tensor count");
  const nKv = c.u64("metadata count");
  if (nTensors > 1e6) throw new GgufError(`${fileName}: tensor count ${nTensors} is implausible`);
  if (nKv > 1e6) throw new GgufError(`${fileName}: metadata count ${nKv} is implausible`);

  const metadata = new Map<string, GgufValue>();
  const metadataTypes = new Map<string, number>();
  for (let i = 0; i < nKv; i++) {
    const key = c.string(`key of metadata entry ${i}`);
    if (metadata.has(key)) throw new GgufError(`${fileName}: duplicate metadata key "${key}"`);
    const type = c.u32(`value type of "${key}"`);
    const value = type === GGUF_VALUE.ARRAY ? c.array(`"${key}"`) : c.scalar(type, `"${key}"`);
    metadata.set(key, value);
    metadataTypes.set(key, type);
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const a = metadata.get("general.alignment");
  if (a !== undefined) {
    if (typeof a !== "number" || a === 0 || (a & (a - 1)) !== 0) {
      throw new GgufError(`${fileName}: general.alignment must be a power of two, got ${String(a)}`);
    }
    alignment = a;
  }

  const infos: { name: string; dims: number[]; type: number; rel: number }[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = c.string(`name of tensor ${i}`);
    if (names.has(name)) throw new GgufError(`${fileName}: duplicate tensor name "${name}"`);
    names.add(name);
    const nDims = c.u32(`dimension count of tensor "${name}"`);
    if (nDims < 1 || nDims > MAX_DIMS) {
      throw new GgufError(`${fileName}: tensor "${name}" has ${nDims} dimensions (expected 1..${MAX_DIMS})`);
    }
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(c.u64(`dimension ${d} of tensor "${name}"`));
    const type = c.u32(`type of tensor "${name}"`);
    const rel = c.u64(`data offset of tensor "${name}"`);
    infos.push({ name, dims, type, rel });
  }
  const dataOffset = Math.ceil(c.pos / alignment) * alignment;

  const tensors = new Map<string, GgufTensorInfo>();
  for (const t of infos) {
    if (t.rel % alignment !== 0) {
      throw new GgufError(`${fileName}: tensor "${t.name}" data offset ${t.rel} is not a multiple of the alignment ${alignment}`);
    }
    const count = t.dims.reduce((x, y) => x * y, 1);
    if (t.dims.some((d) => d < 0) || !Number.isSafeInteger(count)) {
      throw new GgufError(`${fileName}: tensor "${t.name}" has invalid dimensions [${t.dims.join(", ")}]`);
    }
    // Size is only known for the types we compute with; others are refused when a model asks for them.
    let nbytes = -1;
    // (A row length that is not a whole number of blocks also leaves it unknown.)
    if (isSupportedType(t.type)) {
      const n = rowBytes(t.type, t.dims[0]!) * (count / Math.max(1, t.dims[0]!));
      if (Number.isInteger(n)) nbytes = n;
    }
    const info: GgufTensorInfo = { name: t.name, dims: t.dims, type: t.type, offset: dataOffset + t.rel, nbytes };
    if (nbytes >= 0 && info.offset + nbytes > fileSize) {
      throw new GgufError(
        `${fileName}: tensor "${t.name}" (${ggmlTypeName(t.type)} [${t.dims.join(", ")}], ${nbytes} bytes at offset ${info.offset}) ends past the end of the file (${fileSize} bytes); the file is truncated`,
      );
    }
    tensors.set(t.name, info);
  }
  return { version, metadata, metadataTypes, tensors, alignment, dataOffset, size: fileSize };
}

/** Parse the header of a GGUF file. Reads a prefix of the file and grows it until the header fits. */
export async function readGguf(src: ByteSource): Promise<GgufFile> {
  if (src.size < 24) {
    const head = src.size >= 4 ? await src.read(0, 4) : new Uint8Array(0);
    if (head.length === 4 && new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true) !== GGUF_MAGIC) {
      parseHeader(head, true, src.size, src.name); // throws the bad-magic error
    }
    throw new GgufError(`${src.name}: truncated GGUF header: file is ${src.size} bytes, a header needs at least 24`);
  }
  // 8 MiB holds the header of every known vocabulary (262k tokens take ~6 MiB)
  let len = Math.min(src.size, 8 << 20);
  for (;;) {
    const bytes = await src.read(0, len);
    try {
      return parseHeader(bytes, len === src.size, src.size, src.name);
    } catch (e) {
      if (!(e instanceof NeedMore)) throw e;
      len = Math.min(src.size, len * 4);
    }
  }
}

// ---- typed metadata access: every miss names the key and what was expected ----

export function metaString(f: GgufFile, key: string, fallback?: string): string {
  const v = f.metadata.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new GgufError(`missing required metadata key "${key}" (string)`);
  }
  if (typeof v !== "string") throw new GgufError(`metadata key "${key}" should be a string, got ${describe(v)}`);
  return v;
}

export function metaNumber(f: GgufFile, key: string, fallback?: number): number {
  const v = f.metadata.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new GgufError(`missing required metadata key "${key}" (number)`);
  }
  if (typeof v === "bigint") return Number(v);
  if (typeof v !== "number") throw new GgufError(`metadata key "${key}" should be a number, got ${describe(v)}`);
  return v;
}

export function metaBool(f: GgufFile, key: string, fallback: boolean): boolean {
  const v = f.metadata.get(key);
  if (v === undefined) return fallback;
  if (typeof v !== "boolean") throw new GgufError(`metadata key "${key}" should be a bool, got ${describe(v)}`);
  return v;
}

export function metaArray(f: GgufFile, key: string): GgufArray | undefined {
  const v = f.metadata.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== "object") throw new GgufError(`metadata key "${key}" should be an array, got ${describe(v)}`);
  return v;
}

function describe(v: GgufValue): string {
  if (typeof v === "object") return `an array of ${v.items.length}`;
  return `${typeof v} ${JSON.stringify(typeof v === "bigint" ? v.toString() : v)}`;
}
