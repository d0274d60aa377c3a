// WebAssembly SIMD matrix kernels (AssemblyScript). Built twice by wasm/build.js: with relaxed SIMD
// (i16x8.relaxed_dot_i8x16_i7x16_s for the quantized products, f32x4.relaxed_madd where it is a fused multiply-add)
// and with plain SIMD128 only; ASC_FEATURE_RELAXED_SIMD picks the code path at compile time. No allocator and one
// global (fusedMadd, set per instance by init_fused_madd): every kernel works on pointers into the memory the host
// imports, so one instance serves one model and many instances can coexist.
//
// Every kernel has a plain twin in src/engine/backend/reference.ts and is tested against it. Matrix kernels
// write out[t*ostride + r] for token t and row r: a host splitting rows across threads passes the full row count
// as ostride and each range's own rows.

//
// The kernels live in wasm/kernels/, one file per family (the table of twins in docs/numerics.md lists each with
// its reference and its WGSL kernel); this entry exports them.

export { quantize_q8_0, quantize_q8_k, q8k_interleave4, round_f16, round_bf16 } from "./kernels/activations";
export { init_fused_madd, disable_fused_madd } from "./kernels/common";
export { matmul_q4_0, matmul_q5_0, matmul_q_min, matmul_q8_0, repack_q8_0_rows, q8_sign_split, q8_offset_interleave, dot_u8_probe, matmul_q8_0_rows } from "./kernels/quant";
export { matmul_f32, matmul_f16, matmul_bf16 } from "./kernels/float";
export { repack_q4_0_x4, dequant_q4_0_x4_row, matmul_q4_0_x4 } from "./kernels/q4_0_x4";
export { matmul_k, repack_q4_k_x4, repack_q6_k } from "./kernels/kquant";
export { geglu } from "./kernels/geglu";
export { attend_f16 } from "./kernels/attention";
export { attend_tiled } from "./kernels/attention-tiled";
export { quantize_row, QUANTIZE_SCRATCH } from "./kernels/quantize";
export { bucket_mass, exp_weights, max_f32, pick_index, select_ids } from "./kernels/softmax";
