// ---- GeGLU ----
import { f32_to_f16_bits } from "./common";

/**
 * out[i] = gelu(gate[i]) * up[i], n values, as model/ops.ts geglu (ggml_vec_geglu_f32): gelu from ggml's table of
 * 65536 f16 inputs (f32 values at `table`), 0 at or below -10, x at or above 10. out may be gate.
 */
export function geglu(out: usize, gate: usize, up: usize, n: i32, table: usize): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const x = load<f32>(gate + o);
    const g: f32 = x <= -10 ? 0 : x >= 10 ? x : load<f32>(table + (<usize>f32_to_f16_bits(x) << 2));
    store<f32>(out + o, g * load<f32>(up + o));
  }
}
