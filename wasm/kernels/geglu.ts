// ---- GeGLU ----
import { f16x4_bits, f32_to_f16_bits } from "./common";

/**
 * out[i] = gelu(gate[i]) * up[i], n values, as model/ops.ts geglu (ggml_vec_geglu_f32): gelu from ggml's table of
 * 65536 f16 inputs (f32 values at `table`), 0 at or below -10, x at or above 10. out may be gate. Four values at a
 * time: the table indexes by f16x4_bits, the lookups by lane, the selects and the product in SIMD; a group with a
 * NaN takes the scalar path (its index is f32_to_f16_bits's NaN).
 */
export function geglu(out: usize, gate: usize, up: usize, n: i32, table: usize): void {
  let i = 0;
  for (; i + 3 < n; i += 4) {
    const o = <usize>i << 2;
    const x = v128.load(gate + o);
    if (!i32x4.all_true(f32x4.eq(x, x))) {
      for (let j = 0; j < 4; j++) geglu1(out + o + (<usize>j << 2), gate + o + (<usize>j << 2), up + o + (<usize>j << 2), table);
      continue;
    }
    const h = i32x4.shl(f16x4_bits(x), 2);
    let t = f32x4.splat(load<f32>(table + <usize>i32x4.extract_lane(h, 0)));
    t = f32x4.replace_lane(t, 1, load<f32>(table + <usize>i32x4.extract_lane(h, 1)));
    t = f32x4.replace_lane(t, 2, load<f32>(table + <usize>i32x4.extract_lane(h, 2)));
    t = f32x4.replace_lane(t, 3, load<f32>(table + <usize>i32x4.extract_lane(h, 3)));
    const g = v128.bitselect(f32x4.splat(0), v128.bitselect(x, t, f32x4.ge(x, f32x4.splat(10))), f32x4.le(x, f32x4.splat(-10)));
    v128.store(out + o, f32x4.mul(g, v128.load(up + o)));
  }
  for (; i < n; i++) geglu1(out + (<usize>i << 2), gate + (<usize>i << 2), up + (<usize>i << 2), table);
}

@inline function geglu1(out: usize, gate: usize, up: usize, table: usize): void {
  const x = load<f32>(gate);
  const g: f32 = x <= -10 ? 0 : x >= 10 ? x : load<f32>(table + (<usize>f32_to_f16_bits(x) << 2));
  store<f32>(out, g * load<f32>(up));
}
