// ggml's reference quantizers in WebAssembly (wasm/kernels/quantize.ts): the same bytes as quant.ts's TypeScript
// ones, several times faster (the K-quant scale search is most of a quantizer's time). A RowEncoder for the
// writers (make-test-model, quantize, convert); types it does not carry (F32, F16, BF16) go to quant.ts.
import { GGML_TYPE, typeLayout } from "./ggml-types.ts";
import { encodeRow, type RowEncoder } from "./quant.ts";

interface QuantizeExports {
  quantize_row(type: number, x: number, n: number, out: number, scratch: number): number;
  QUANTIZE_SCRATCH: WebAssembly.Global;
}

const WASM_TYPES = new Set<number>([GGML_TYPE.Q4_0, GGML_TYPE.Q4_1, GGML_TYPE.Q5_0, GGML_TYPE.Q5_1, GGML_TYPE.Q8_0, GGML_TYPE.Q4_K, GGML_TYPE.Q5_K, GGML_TYPE.Q6_K]);
const PAGE = 65536;

/** An encoder over its own instance of the kernels (build/kernels-simd.wasm or -relaxed.wasm: a non-shared build). */
export function wasmRowEncoder(module: WebAssembly.Module): RowEncoder {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const k = new WebAssembly.Instance(module, { env: { memory, abort: () => { throw new Error("wasm abort"); } } }).exports as unknown as QuantizeExports;
  const scratchBytes = Number(k.QUANTIZE_SCRATCH.value);
  return (type, x) => {
    if (!WASM_TYPES.has(type)) return encodeRow(type, x);
    const { blockSize, blockBytes } = typeLayout(type);
    if (x.length % blockSize !== 0) throw new RangeError(`${x.length} values are not a whole number of ${blockSize}-value blocks`);
    const outBytes = (x.length / blockSize) * blockBytes;
    // layout: scratch | the module's static data (from 1024: vector constants, tables) | x | out
    const xAt = 16384, outAt = xAt + x.length * 4, end = outAt + outBytes;
    if (scratchBytes > 1024) throw new Error("quantizer scratch larger than its slot");
    if (end > memory.buffer.byteLength) memory.grow(Math.ceil((end - memory.buffer.byteLength) / PAGE));
    new Float32Array(memory.buffer, xAt, x.length).set(x);
    if (k.quantize_row(type, xAt, x.length, outAt, 0) !== 0) throw new Error(`the WebAssembly quantizer refused type ${type}`);
    return new Uint8Array(memory.buffer, outAt, outBytes).slice();
  };
}
