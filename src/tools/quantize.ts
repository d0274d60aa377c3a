// `gemma-edge quantize`: a GGUF with F32, F16 or BF16 weights to Q4_0 or Q8_0, tensor by tensor and a slab of rows
// at a time, so memory stays flat however big the input. Every 2-D tensor (token_embd included) gets the target type
// through ggml's reference quantizers (bit for bit); 1-D tensors (norms) become F32; metadata is copied with
// general.file_type updated.
import type { ByteSource } from "../engine/byte-source.ts";
import { GGML_TYPE, ggmlTypeName, LLAMA_FTYPE, rowBytes } from "../engine/ggml-types.ts";
import { GGUF_VALUE, GgufError, readGguf, type GgufTensorInfo } from "../engine/gguf.ts";
import { writeGguf, type MetaEntry, type TensorToWrite } from "../engine/gguf-writer.ts";
import { dequantizeRow, encodeRow } from "../engine/quant.ts";

export const QUANTIZE_TYPES: Record<string, number> = { q4_0: GGML_TYPE.Q4_0, q8_0: GGML_TYPE.Q8_0 };
/** llama_ftype of an all-Q4_0 / all-Q8_0 file. */
const INPUT_TYPES = new Set<number>([GGML_TYPE.F32, GGML_TYPE.F16, GGML_TYPE.BF16]);
const SLAB_BYTES = 8 << 20;

export interface QuantizeProgress {
  tensor: string;
  done: number;
  total: number;
}

/** The output tensors: each a generator that reads its input rows slab by slab. */
function plan(src: ByteSource, tensors: GgufTensorInfo[], target: number): TensorToWrite[] {
  return tensors.map((t) => {
    if (!INPUT_TYPES.has(t.type)) {
      throw new GgufError(`tensor "${t.name}" has type ${ggmlTypeName(t.type)}; quantize reads F32, F16 or BF16 weights`);
    }
    const cols = t.dims[0]!;
    const rows = t.dims.slice(1).reduce((a, b) => a * b, 1);
    const is2d = t.dims.filter((d) => d > 1).length >= 2;
    const type = is2d ? target : GGML_TYPE.F32;
    if (is2d && cols % 32 !== 0) throw new GgufError(`tensor "${t.name}": rows of ${cols} values are not a multiple of the 32-value ${ggmlTypeName(target)} block`);
    const inRow = rowBytes(t.type, cols);
    const rowsPerSlab = Math.max(1, Math.floor(SLAB_BYTES / inRow));
    return {
      name: t.name,
      dims: t.dims,
      type,
      data: async function* () {
        for (let r = 0; r < rows; r += rowsPerSlab) {
          const n = Math.min(rowsPerSlab, rows - r);
          const raw = await src.read(t.offset + r * inRow, n * inRow);
          const f = new Float32Array(n * cols);
          dequantizeRow(t.type, raw, 0, n * cols, f);
          yield encodeRow(type, f);
        }
      },
    };
  });
}

/**
 * Read and check the input (every tensor's type and shape) before anything is written; returns the writer that
 * streams the quantized file to a sink and resolves to its size.
 */
export async function prepareQuantize(src: ByteSource, target: number): Promise<(sink: (b: Uint8Array) => void | Promise<void>) => Promise<number>> {
  if (!Object.values(QUANTIZE_TYPES).includes(target)) throw new Error(`cannot quantize to ${ggmlTypeName(target)}`);
  const f = await readGguf(src);
  const metadata: MetaEntry[] = [...f.metadata].map(([key, value]) => {
    if (key === "general.file_type") return { key, type: GGUF_VALUE.UINT32, value: LLAMA_FTYPE[target]! };
    return { key, type: f.metadataTypes.get(key)!, value };
  });
  if (!f.metadata.has("general.file_type")) metadata.push({ key: "general.file_type", type: GGUF_VALUE.UINT32, value: LLAMA_FTYPE[target]! });
  const tensors = plan(src, [...f.tensors.values()], target);
  return (sink) => writeGguf(sink, metadata, tensors, f.alignment);
}
