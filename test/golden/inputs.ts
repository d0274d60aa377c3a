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
