// The inputs make-golden.c feeds to ggml and glibc, regenerated here with the same LCG.
export function goldenInputs(): Float32Array {
  let state = 20261128;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return Math.fround((state | 0) / 2147483648);
  };
  const x = new Float32Array(32 * 64);
  for (let b = 0; b < 64; b++) {
    const scale = Math.fround(Math.pow(10, (b % 11) - 6));
    for (let j = 0; j < 32; j++) x[b * 32 + j] = Math.fround(next() * scale);
  }
  for (let j = 0; j < 32; j++) x[j] = 0;
  for (let j = 0; j < 32; j++) x[32 + j] = (j - 16) / 2;
  for (let j = 0; j < 32; j++) x[64 + j] = (j % 17) - 8;
  for (let j = 0; j < 32; j++) x[96 + j] = j === 5 ? -3 : Math.fround(Math.fround(0.001) * j);
  x[4 * 32 + 7] = 65504;
  x[4 * 32 + 8] = -1e-8;
  return x;
}

/** make-golden.c's K-quant inputs: goldenInputs(), then 2048 values uniform in +-0.05 from a second LCG (seed 77). */
export function goldenInputsK(): Float32Array {
  let state = 77;
  const x = new Float32Array(2 * 32 * 64);
  x.set(goldenInputs());
  for (let i = 2048; i < x.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    x[i] = Math.fround(Math.fround((state | 0) / 2147483648) * Math.fround(0.05));
  }
  return x;
}

/**
 * make-kquant-matmul.cpp's activations: its LCG (seed 4242) draws each case's 16 x 512 weights (which the JSON
 * holds, quantized), then the 512 x n activations for n = 1..9 (x10 when n % 3 == 0); cases in the JSON's order.
 */
export function kquantMatmulActivations(cases: number, cols = 512, rows = 16): Float32Array[][] {
  let state = 4242;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return Math.fround((state | 0) / 2147483648);
  };
  const out: Float32Array[][] = [];
  for (let c = 0; c < cases; c++) {
    for (let i = 0; i < cols * rows; i++) next();
    const perN: Float32Array[] = [];
    for (let n = 1; n <= 9; n++) {
      const scale = n % 3 === 0 ? 10 : 1;
      perN.push(Float32Array.from({ length: cols * n }, () => Math.fround(next() * scale)));
    }
    out.push(perN);
  }
  return out;
}
