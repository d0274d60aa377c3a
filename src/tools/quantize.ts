// `gemma-edge quantize`: a GGUF with F32, F16 or BF16 weights to Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K or
// the Q4_K_M mix (K-quants fall back as llama.cpp's do on rows that are not a multiple of 256),
// tensor by tensor and a slab of rows at a time, so memory stays flat however big the input. Every 2-D tensor
// (token_embd included) gets the target type (a mix: the type it picks for that tensor) through ggml's reference
// quantizers (bit for bit); 1-D tensors (norms) become F32; metadata is copied with general.file_type updated.
import type { ByteSource } from "../engine/byte-source.ts";
import { GGML_TYPE, ggmlTypeName, LLAMA_FTYPE, rowBytes, typeLayout } from "../engine/ggml-types.ts";
import { GGUF_VALUE, GgufError, readGguf, type GgufTensorInfo } from "../engine/gguf.ts";
import { writeGguf, type MetaEntry, type TensorToWrite } from "../engine/gguf-writer.ts";
import { dequantizeRow, encodeRow, type RowEncoder } from "../engine/quant.ts";
import { fallbackType, WEIGHT_MIXES, type WeightMix } from "./weight-mix.ts";

/** The --type names: one type for every matrix, or a mix. */
export const QUANTIZE_TYPES: Record<string, number | WeightMix> = {
  q4_0: GGML_TYPE.Q4_0, q4_1: GGML_TYPE.Q4_1, q5_0: GGML_TYPE.Q5_0, q5_1: GGML_TYPE.Q5_1, q8_0: GGML_TYPE.Q8_0,
  q4_k: GGML_TYPE.Q4_K, q5_k: GGML_TYPE.Q5_K, q6_k: GGML_TYPE.Q6_K, ...WEIGHT_MIXES,
};
const INPUT_TYPES = new Set<number>([GGML_TYPE.F32, GGML_TYPE.F16, GGML_TYPE.BF16]);
const SLAB_BYTES = 8 << 20;

/** The output tensors: each a generator that reads its input rows slab by slab. */
function plan(src: ByteSource, tensors: GgufTensorInfo[], target: number | WeightMix, nLayers: number, encode: RowEncoder): TensorToWrite[] {
  return tensors.map((t) => {
    if (!INPUT_TYPES.has(t.type)) {
      throw new GgufError(`tensor "${t.name}" has type ${ggmlTypeName(t.type)}; quantize reads F32, F16 or BF16 weights`);
    }
    const cols = t.dims[0]!;
    const rows = t.dims.slice(1).reduce((a, b) => a * b, 1);
    const is2d = t.dims.filter((d) => d > 1).length >= 2;
    // llama.cpp's fallback for rows a K-quant cannot cut into 256-value blocks (weight-mix.ts)
    const type = !is2d ? GGML_TYPE.F32 : fallbackType(typeof target === "number" ? target : target.typeOf(t.name, nLayers), cols);
    const block = typeLayout(type).blockSize;
    if (cols % block !== 0) throw new GgufError(`tensor "${t.name}": rows of ${cols} values are not a multiple of the ${block}-value ${ggmlTypeName(type)} block`);
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
          yield encode(type, f);
        }
      },
    };
  });
}

/**
 * Read and check the input (every tensor's type and shape) before anything is written; returns the writer that
 * streams the quantized file to a sink and resolves to its size.
 */
export async function prepareQuantize(src: ByteSource, target: number | WeightMix, encode: RowEncoder = encodeRow): Promise<(sink: (b: Uint8Array) => void | Promise<void>) => Promise<number>> {
  if (!Object.values(QUANTIZE_TYPES).includes(target)) throw new Error(`cannot quantize to ${typeof target === "number" ? ggmlTypeName(target) : "that mix"}`);
  const f = await readGguf(src);
  const fileType = typeof target === "number" ? LLAMA_FTYPE[target]! : target.fileType;
  const metadata: MetaEntry[] = [...f.metadata].map(([key, value]) => {
    if (key === "general.file_type") return { key, type: GGUF_VALUE.UINT32, value: fileType };
    return { key, type: f.metadataTypes.get(key)!, value };
  });
  if (!f.metadata.has("general.file_type")) metadata.push({ key: "general.file_type", type: GGUF_VALUE.UINT32, value: fileType });
  const arch = f.metadata.get("general.architecture");
  const blocks = f.metadata.get(`${typeof arch === "string" ? arch : "gemma"}.block_count`);
  const tensors = plan(src, [...f.tensors.values()], target, typeof blocks === "number" ? blocks : 0, encode);
  return (sink) => writeGguf(sink, metadata, tensors, f.alignment);
}
