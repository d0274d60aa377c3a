// ---- f16 / bf16 / f32 matrices x f32 activations (already rounded to the weight type) ----
import { f16_to_f32, f16x4_to_f32x4, fma1, fma4_t, fusedMadd, hsum8, reduce32 } from "./common";

/** 8 weight values starting at element i of a row, as two f32x4 (kind 0: f32, 1: f16, 2: bf16). */
@inline function load8(p: usize, i: i32, kind: i32, second: bool): v128 {
  if (kind == 0) return v128.load(p + (<usize>i << 2) + (second ? 16 : 0));
  const h = v128.load(p + (<usize>i << 1));
  const wide = second ? i32x4.extend_high_i16x8_u(h) : i32x4.extend_low_i16x8_u(h);
  return kind == 1 ? f16x4_to_f32x4(wide) : i32x4.shl(wide, 16);
}

/**
 * out[t*ostride + r] = dot(row r, x_t). `tiny` != 0: tinyBLAS (8 lanes fused over steps of 8, then hsum8; needs
 * cols % 8 == 0); otherwise ggml_vec_dot_f16/f32 (32 lanes fused over steps of 32, GGML_F32x8_REDUCE, the
 * cols % 32 leftover products added after: in double for f16, fused for f32) or ggml_vec_dot_bf16 (32 lanes of
 * separate multiply and add).
 */
function matmul_float(w: usize, rows: i32, cols: i32, x: usize, ntok: i32, out: usize, ostride: i32, kind: i32, tiny: i32): void {
  if (ASC_FEATURE_RELAXED_SIMD && fusedMadd) matmul_float_t<f32>(w, rows, cols, x, ntok, out, ostride, kind, tiny);
  else matmul_float_t<f64>(w, rows, cols, x, ntok, out, ostride, kind, tiny);
}

function matmul_float_t<Acc>(w: usize, rows: i32, cols: i32, x: usize, ntok: i32, out: usize, ostride: i32, kind: i32, tiny: i32): void {
  const rowBytes = <usize>cols << (kind == 0 ? 2 : 1);
  for (let t = 0; t < ntok; t++) {
    const xt = x + (<usize>(t * cols) << 2);
    for (let r = 0; r < rows; r++) {
      const p = w + <usize>r * rowBytes;
      let res: f32;
      if (tiny) {
        let lo = f32x4.splat(0);
        let hi = f32x4.splat(0);
        for (let i = 0; i < cols; i += 8) {
          lo = fma4_t<Acc>(load8(p, i, kind, false), v128.load(xt + (<usize>i << 2)), lo);
          hi = fma4_t<Acc>(load8(p, i, kind, true), v128.load(xt + (<usize>i << 2) + 16), hi);
        }
        res = hsum8(lo, hi);
      } else {
        let a0l = f32x4.splat(0), a0h = f32x4.splat(0), a1l = f32x4.splat(0), a1h = f32x4.splat(0);
        let a2l = f32x4.splat(0), a2h = f32x4.splat(0), a3l = f32x4.splat(0), a3h = f32x4.splat(0);
        const np = cols & ~31;
        for (let i = 0; i < np; i += 32) {
          const x0 = xt + (<usize>i << 2);
          if (kind == 2) {
            a0l = f32x4.add(f32x4.mul(load8(p, i, kind, false), v128.load(x0)), a0l);
            a0h = f32x4.add(f32x4.mul(load8(p, i, kind, true), v128.load(x0 + 16)), a0h);
            a1l = f32x4.add(f32x4.mul(load8(p, i + 8, kind, false), v128.load(x0 + 32)), a1l);
            a1h = f32x4.add(f32x4.mul(load8(p, i + 8, kind, true), v128.load(x0 + 48)), a1h);
            a2l = f32x4.add(f32x4.mul(load8(p, i + 16, kind, false), v128.load(x0 + 64)), a2l);
            a2h = f32x4.add(f32x4.mul(load8(p, i + 16, kind, true), v128.load(x0 + 80)), a2h);
            a3l = f32x4.add(f32x4.mul(load8(p, i + 24, kind, false), v128.load(x0 + 96)), a3l);
            a3h = f32x4.add(f32x4.mul(load8(p, i + 24, kind, true), v128.load(x0 + 112)), a3h);
          } else {
            a0l = fma4_t<Acc>(load8(p, i, kind, false), v128.load(x0), a0l);
            a0h = fma4_t<Acc>(load8(p, i, kind, true), v128.load(x0 + 16), a0h);
            a1l = fma4_t<Acc>(load8(p, i + 8, kind, false), v128.load(x0 + 32), a1l);
            a1h = fma4_t<Acc>(load8(p, i + 8, kind, true), v128.load(x0 + 48), a1h);
            a2l = fma4_t<Acc>(load8(p, i + 16, kind, false), v128.load(x0 + 64), a2l);
            a2h = fma4_t<Acc>(load8(p, i + 16, kind, true), v128.load(x0 + 80), a2h);
            a3l = fma4_t<Acc>(load8(p, i + 24, kind, false), v128.load(x0 + 96), a3l);
            a3h = fma4_t<Acc>(load8(p, i + 24, kind, true), v128.load(x0 + 112), a3h);
          }
        }
        if (kind == 2) {
          // (c1+c3)+(c2+c4), high half + low half, then (g0+g2)+(g1+g3)
          const cl = f32x4.add(f32x4.add(a0l, a2l), f32x4.add(a1l, a3l));
          const ch = f32x4.add(f32x4.add(a0h, a2h), f32x4.add(a1h, a3h));
          const g = f32x4.add(ch, cl);
          res = (f32x4.extract_lane(g, 0) + f32x4.extract_lane(g, 2)) + (f32x4.extract_lane(g, 1) + f32x4.extract_lane(g, 3));
        } else {
          res = reduce32(a0l, a0h, a1l, a1h, a2l, a2h, a3l, a3h);
        }
        if (kind == 0) {
          for (let i = np; i < cols; i++) res = fma1(load<f32>(p + (<usize>i << 2)), load<f32>(xt + (<usize>i << 2)), res);
        } else {
          let sum = <f64>res;
          for (let i = np; i < cols; i++) {
            const h = <u32>load<u16>(p + (<usize>i << 1));
            const wv: f32 = kind == 1 ? f16_to_f32(h) : reinterpret<f32>(h << 16);
            sum += <f64>(wv * load<f32>(xt + (<usize>i << 2)));
          }
          res = <f32>sum;
        }
      }
      store<f32>(out + (<usize>(t * ostride + r) << 2), res);
    }
  }
}

export function matmul_f32(w: usize, rows: i32, cols: i32, x: usize, ntok: i32, out: usize, ostride: i32, tiny: i32): void {
  matmul_float(w, rows, cols, x, ntok, out, ostride, 0, tiny);
}
export function matmul_f16(w: usize, rows: i32, cols: i32, x: usize, ntok: i32, out: usize, ostride: i32, tiny: i32): void {
  matmul_float(w, rows, cols, x, ntok, out, ostride, 1, tiny);
}
export function matmul_bf16(w: usize, rows: i32, cols: i32, x: usize, ntok: i32, out: usize, ostride: i32, tiny: i32): void {
  matmul_float(w, rows, cols, x, ntok, out, ostride, 2, tiny);
}
