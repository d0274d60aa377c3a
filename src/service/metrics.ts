// Prometheus metrics in the text exposition format (version 0.0.4): counters, gauges and histograms with labels.
// A small writer rather than prom-client, which needs Node's built-ins (cluster, v8, perf_hooks) and so does not
// load in workerd; the format is plain text and this is all of it that we use.
// Names follow TGI's (tgi_request_*, tgi_batch_*, tgi_queue_size) and llama.cpp's server (llamacpp:*), so that
// existing dashboards fit.

type Labels = Record<string, string>;

const key = (l: Labels) => JSON.stringify(Object.entries(l).sort(([a], [b]) => (a < b ? -1 : 1)));
const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const labelText = (l: Labels, extra: Labels = {}) => {
  const all = { ...l, ...extra };
  const parts = Object.entries(all).map(([k, v]) => `${k}="${escape(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
};
const num = (v: number) => (Number.isFinite(v) ? String(v) : v > 0 ? "+Inf" : v < 0 ? "-Inf" : "NaN");

interface Metric {
  write(out: string[]): void;
}

abstract class Labelled<S> implements Metric {
  protected readonly series = new Map<string, { labels: Labels; value: S }>();
  readonly name: string;
  readonly help: string;
  abstract readonly type: string;
  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }
  protected get(labels: Labels, init: () => S): S {
    const k = key(labels);
    let s = this.series.get(k);
    if (!s) this.series.set(k, (s = { labels, value: init() }));
    return s.value;
  }
  write(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`);
    this.writeSeries(out);
  }
  protected abstract writeSeries(out: string[]): void;
}

export class Counter extends Labelled<{ v: number }> {
  readonly type = "counter";
  inc(by = 1, labels: Labels = {}): void {
    if (!(by >= 0)) throw new RangeError(`a counter only goes up (got ${by})`);
    this.get(labels, () => ({ v: 0 })).v += by;
  }
  protected writeSeries(out: string[]): void {
    if (!this.series.size) out.push(`${this.name} 0`);
    for (const { labels, value } of this.series.values()) out.push(`${this.name}${labelText(labels)} ${num(value.v)}`);
  }
}

export class Gauge extends Labelled<{ v: number }> {
  readonly type = "gauge";
  private readonly read?: () => number;
  /** `read`: the value, asked for at each scrape (instead of set()). */
  constructor(name: string, help: string, read?: () => number) {
    super(name, help);
    this.read = read;
  }
  set(v: number, labels: Labels = {}): void {
    this.get(labels, () => ({ v: 0 })).v = v;
  }
  protected writeSeries(out: string[]): void {
    if (this.read) out.push(`${this.name} ${num(this.read())}`);
    else if (!this.series.size) out.push(`${this.name} 0`);
    else for (const { labels, value } of this.series.values()) out.push(`${this.name}${labelText(labels)} ${num(value.v)}`);
  }
}

export class Histogram extends Labelled<{ counts: number[]; sum: number; count: number }> {
  readonly type = "histogram";
  readonly buckets: number[];
  constructor(name: string, help: string, buckets: number[]) {
    super(name, help);
    this.buckets = buckets.slice().sort((a, b) => a - b);
  }
  observe(v: number, labels: Labels = {}): void {
    const s = this.get(labels, () => ({ counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    this.buckets.forEach((b, i) => {
      if (v <= b) s.counts[i]!++;
    });
    s.sum += v;
    s.count++;
  }
  protected writeSeries(out: string[]): void {
    const all = this.series.size ? [...this.series.values()] : [{ labels: {}, value: { counts: this.buckets.map(() => 0), sum: 0, count: 0 } }];
    for (const { labels, value } of all) {
      this.buckets.forEach((b, i) => out.push(`${this.name}_bucket${labelText(labels, { le: num(b) })} ${value.counts[i]}`));
      out.push(`${this.name}_bucket${labelText(labels, { le: "+Inf" })} ${value.count}`);
      out.push(`${this.name}_sum${labelText(labels)} ${num(value.sum)}`, `${this.name}_count${labelText(labels)} ${value.count}`);
    }
  }
}

/** Metrics in the order they are written. */
export class Registry {
  private readonly metrics: Metric[] = [];
  add<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }
  text(): string {
    const out: string[] = [];
    for (const m of this.metrics) m.write(out);
    return out.join("\n") + "\n";
  }
}

/** Exponential buckets: start, start*factor, ... (count of them). */
export function exponentialBuckets(start: number, factor: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => Number((start * factor ** i).toPrecision(6)));
}

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
