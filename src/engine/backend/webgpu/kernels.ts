// WGSL compute kernels of the WebGPU forward pass. Every kernel has the same first two bindings: `step` (the
// batch: n tokens at position pos, written once per forward) and `p` (the op's own constants, written once when
// the op's bind group is made); storage buffers follow. `step.lastRow` is the batch's last row (COPY_LAST_ROW);
// `step.zero` is always 0 (see opaque()). f32 arithmetic throughout, in llama.cpp's order and rounding (see
// model.ts); the KV cache holds f16 values (pairs in u32s, read as array<f16> where the device has shader-f16),
// as the CPU path keeps f16. Weights are stored per type (see model.ts: upload):
//   Q4_0: wq = 4 u32 of nibbles per block (byte j: element j low, element j+16 high), wd = one f32 scale per block
//   Q8_0: wq = 8 u32 of int8 per block, wd = one f32 scale per block
//   F16, BF16: wq = one u32 per pair of values;  F32: wq = f32 values
//
// The kernels live in kernels/, one file per family (the table of twins in docs/numerics.md lists each with its
// TypeScript reference and its WebAssembly export); this module exports them all.
export { WG, type KernelFeatures, BASELINE, fmaFn, f32bits } from "./kernels/common.ts";
export { isQuantized, hasMin, embedKernel, matmulRowsPerGroup, matmulKernel, quantize } from "./kernels/matmul.ts";
export { softcapLogits, fmaProbe, rmsnorm, rope } from "./kernels/layers.ts";
export { STORE_KV, attention } from "./kernels/attention.ts";
export { GEGLU, ADD, COPY_LAST_ROW } from "./kernels/elementwise.ts";
