// ---- attention, tiled path (ggml's flash attention for batches of 64+ query rows) ----
import { glibc_expf, softcap_score } from "./attention";
import { f16_to_f32, fma4_t, fusedMadd, hsum8 } from "./common";

/** One lane of ggml_v_expf (AVX2 + FMA), as src/engine/numeric.ts vExpf. */
function v_expf1(x: f32): f32 {
  const r: f32 = 12582912.0;
  const z = <f32>(<f64>x * <f64>reinterpret<f32>(0x3fb8aa3b) + <f64>r);
  const n: f32 = z - r;
  const b = <f32>(<f64>(-n) * <f64>reinterpret<f32>(0x35bfbe8e) + <f64><f32>(<f64>(-n) * <f64>reinterpret<f32>(0x3f317200) + <f64>x));
  const e = reinterpret<i32>(z) << 23;
  const k = reinterpret<f32>(e + 0x3f800000);
  const u: f32 = b * b;
  const p0 = reinterpret<f32>(0x3c072010), p1 = reinterpret<f32>(0x3d2b9f17), p2 = reinterpret<f32>(0x3e2aaf33);
  const p3 = reinterpret<f32>(0x3efffedb), p4 = reinterpret<f32>(0x3f7ffff6);
  const f1 = <f32>(<f64>p0 * <f64>b + <f64>p1);
  const f2 = <f32>(<f64>p2 * <f64>b + <f64>p3);
  const f3 = <f32>(<f64>f1 * <f64>u + <f64>f2);
  const j = <f32>(<f64>f3 * <f64>u + <f64>(p4 * b));
  const an = abs(n);
  if (!(an > 126)) return <f32>(<f64>k * <f64>j + <f64>k);
  const g: i32 = n <= 0 ? <i32>0x82000000 : 0;
  const s1 = reinterpret<f32>(g + 0x7f000000);
  if (an > 192) return s1 * s1;
  const s2 = reinterpret<f32>(e - g);
  return <f32>(<f64>s2 * <f64>j + <f64>s2) * s1;
}

/**
 * All nq query rows of one head of a batch: row r (f32, at q + r*qStride elements) sits at position pos0 + r and
 * attends to positions 0..pos0+r of the f16 caches (position p of this KV head at element p*stride + offset).
 * As ggml's tiled flash attention: f32 q, scores as FMA chains over the head dimension, keys in tiles of 64 with a
 * softmax per tile (ggml_v_expf; each 8 summed as hsum8, the 8s summed in double), V accumulated in f32 by FMA.
 * scratch: (nq*d + 2*64*d + 64 + 2*nq) f32. d % 4 == 0.
 */
/**
 * The `nq` query rows at positions pos0.. of one head (model/ops.ts attendHeadTiled) over a KV layer of `cells`
 * rows (position p in cell p % cells) of which each row sees the last `window` positions (0: all), scores
 * soft-capped by `cap` (0: none).
 */
export function attend_tiled(out: usize, q: usize, qStride: i32, k: usize, v: usize, pos0: i32, nq: i32, cells: i32, window: i32, stride: i32, offset: i32, d: i32, scratch: usize, cap: f32): void {
  if (ASC_FEATURE_RELAXED_SIMD && fusedMadd) attend_tiled_t<f32>(out, q, qStride, k, v, pos0, nq, cells, window, stride, offset, d, scratch, cap);
  else attend_tiled_t<f64>(out, q, qStride, k, v, pos0, nq, cells, window, stride, offset, d, scratch, cap);
}

function attend_tiled_t<Acc>(out: usize, q: usize, qStride: i32, k: usize, v: usize, pos0: i32, nq: i32, cells: i32, window: i32, stride: i32, offset: i32, d: i32, scratch: usize, cap: f32): void {
  const acc = scratch; //                                   nq x d
  const kt = acc + (<usize>(nq * d) << 2); //               d x 64 (keys transposed)
  const vf = kt + (<usize>(d * 64) << 2); //                64 x d
  const kq = vf + (<usize>(d * 64) << 2); //                64
  const mArr = kq + 256; //                                 nq
  const sArr = mArr + (<usize>nq << 2); //                  nq
  for (let r = 0; r < nq; r++) {
    store<f32>(mArr + (<usize>r << 2), -Infinity);
    store<f32>(sArr + (<usize>r << 2), 0);
  }
  memory.fill(acc, 0, <usize>(nq * d) << 2);
  const filled = min(cells, pos0 + nq); // cells written so far
  for (let t0 = 0; t0 < filled; t0 += 64) {
    const mt = min(64, filled - t0);
    // the tile in f32: keys transposed (d x 64, zero past mt), values as rows
    for (let j = 0; j < 64; j++) {
      const base = <usize>((t0 + j) * stride + offset) << 1;
      for (let i = 0; i < d; i++) {
        store<f32>(kt + (<usize>(i * 64 + j) << 2), j < mt ? f16_to_f32(<u32>load<u16>(k + base + (<usize>i << 1))) : 0);
      }
      if (j < mt) for (let i = 0; i < d; i++) store<f32>(vf + (<usize>(j * d + i) << 2), f16_to_f32(<u32>load<u16>(v + base + (<usize>i << 1))));
    }
    for (let r = 0; r < nq; r++) {
      // the cells this row sees: [a0, a1) and [b0, b1) (model/ops.ts visibleCells), relative to the tile
      const qp = pos0 + r;
      const lo = window > 0 ? max(0, qp - window + 1) : 0;
      const qc = qp % cells, lc = lo % cells;
      const a0 = (lc <= qc ? lc : 0) - t0, a1 = qc + 1 - t0;
      const b0 = (lc <= qc ? 0 : lc) - t0, b1 = (lc <= qc ? 0 : cells) - t0;
      if (max(a0, 0) >= min(a1, mt) && max(b0, 0) >= min(b1, mt)) continue; // sees nothing of this tile
      const qr = q + (<usize>(r * qStride) << 2);
      // scores: 16 groups of 4 positions, each an FMA chain over the head dimension
      let tileMax: f32 = -Infinity;
      for (let j = 0; j < 64; j += 4) {
        const any = j < mt && ((j + 4 > a0 && j < a1) || (j + 4 > b0 && j < b1));
        if (!any) {
          v128.store(kq + (<usize>j << 2), f32x4.splat(-Infinity));
          continue;
        }
        let s = f32x4.splat(0);
        for (let i = 0; i < d; i++) s = fma4_t<Acc>(f32x4.splat(load<f32>(qr + (<usize>i << 2))), v128.load(kt + (<usize>(i * 64 + j) << 2)), s);
        v128.store(kq + (<usize>j << 2), s);
        for (let l = 0; l < 4; l++) {
          const jl = j + l;
          const pp = kq + (<usize>jl << 2);
          if (jl >= mt || !((jl >= a0 && jl < a1) || (jl >= b0 && jl < b1))) store<f32>(pp, -Infinity);
          else {
            const x = softcap_score(load<f32>(pp), cap);
            store<f32>(pp, x);
            if (x > tileMax) tileMax = x;
          }
        }
      }
      if (tileMax == -Infinity) continue; // nothing of this tile is seen
      const mp = mArr + (<usize>r << 2), sp = sArr + (<usize>r << 2);
      const mOld = load<f32>(mp);
      const mNew: f32 = max(mOld, tileMax);
      const ar = acc + (<usize>(r * d) << 2);
      if (mNew > mOld) {
        const ms = glibc_expf(mOld - mNew);
        const vms = f32x4.splat(ms);
        for (let i = 0; i < d; i += 4) v128.store(ar + (<usize>i << 2), f32x4.mul(v128.load(ar + (<usize>i << 2)), vms));
        store<f32>(sp, load<f32>(sp) * ms);
      }
      store<f32>(mp, mNew);
      let sum: f64 = 0;
      for (let g = 0; g < 64; g += 8) {
        for (let l = 0; l < 8; l++) {
          const pp = kq + (<usize>(g + l) << 2);
          store<f32>(pp, v_expf1(load<f32>(pp) - mNew));
        }
        const lo = v128.load(kq + (<usize>g << 2)), hi = v128.load(kq + (<usize>(g + 4) << 2));
        sum += <f64>hsum8(lo, hi);
      }
      store<f32>(sp, <f32>(<f64>load<f32>(sp) + sum));
      // V: per element an FMA chain over the tile's visible positions
      for (let j = 0; j < mt; j++) {
        const pv = load<f32>(kq + (<usize>j << 2));
        if (pv == 0) continue; // a masked cell (adding 0 * v changes nothing)
        const pj = f32x4.splat(pv);
        const vr = vf + (<usize>(j * d) << 2);
        for (let i = 0; i < d; i += 4) v128.store(ar + (<usize>i << 2), fma4_t<Acc>(pj, v128.load(vr + (<usize>i << 2)), v128.load(ar + (<usize>i << 2))));
      }
    }
  }
  for (let r = 0; r < nq; r++) {
    const s = load<f32>(sArr + (<usize>r << 2));
    const inv = f32x4.splat(s == 0 ? <f32>0 : <f32>1.0 / s);
    const ar = acc + (<usize>(r * d) << 2);
    const orow = out + (<usize>(r * qStride) << 2);
    for (let i = 0; i < d; i += 4) v128.store(orow + (<usize>i << 2), f32x4.mul(v128.load(ar + (<usize>i << 2)), inv));
  }
}
