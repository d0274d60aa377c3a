// What a model service counts for GET /metrics: requests through the queue and the batch, tokens, the prompt
// cache and the KV cache. The HTTP layer adds requests by route and status (api/app.ts); in a Worker deployment
// this part lives in the model's Durable Object and the front Worker fetches it.
import { Counter, exponentialBuckets, Gauge, Histogram, Registry } from "../service/metrics.ts";
import type { BatchScheduler, StepInfo } from "../engine/batching.ts";

const SECONDS = exponentialBuckets(0.001, 2.5, 14); // 1 ms .. ~2.5 min

export class ServiceMetrics {
  readonly registry = new Registry();
  private scheduler: BatchScheduler | undefined;
  private readonly queueDuration = this.registry.add(new Histogram("tgi_request_queue_duration", "Time a request waited in the queue for a batch slot (seconds)", SECONDS));
  private readonly inferenceDuration = this.registry.add(new Histogram("tgi_request_inference_duration", "Time from a request's first step to its end (seconds)", SECONDS));
  private readonly inputLength = this.registry.add(new Histogram("tgi_request_input_length", "Prompt tokens per request", exponentialBuckets(8, 2, 12)));
  private readonly generatedTokens = this.registry.add(new Histogram("tgi_request_generated_tokens", "Generated tokens per request", exponentialBuckets(1, 2, 13)));
  private readonly success = this.registry.add(new Counter("tgi_request_success", "Requests that ended with an answer"));
  private readonly failure = this.registry.add(new Counter("tgi_request_failure", "Requests that failed, by kind (overloaded, generation, timeout)"));
  private readonly stepDuration = this.registry.add(new Histogram("tgi_batch_inference_duration", "Time of one forward step of the batch (seconds)", SECONDS));
  private readonly stepSize = this.registry.add(new Histogram("gemma_edge_batch_step_sequences", "Sequences in one forward step", [1, 2, 4, 8, 16, 32, 64]));
  private readonly promptTokens = this.registry.add(new Counter("llamacpp:prompt_tokens_total", "Prompt tokens of finished requests, cached ones included"));
  private readonly predicted = this.registry.add(new Counter("llamacpp:tokens_predicted_total", "Generated tokens"));
  private readonly prefilled = this.registry.add(new Counter("gemma_edge_prefill_tokens_total", "Prompt tokens computed by forward steps (not taken from the prompt cache)"));
  private readonly cacheHits = this.registry.add(new Counter("gemma_edge_prompt_cache_hit_tokens_total", "Prompt tokens taken from the prompt cache"));
  private readonly tokensPerSecond = this.registry.add(new Gauge("gemma_edge_tokens_per_second", "Tokens (decode and prompt) per second of the last forward step"));
  private readonly started_ = new Map<number, number>();

  constructor() {
    const s = () => this.scheduler;
    this.registry.add(new Gauge("tgi_batch_current_size", "Sequences running in the batch", () => s()?.active ?? 0));
    this.registry.add(new Gauge("tgi_queue_size", "Requests waiting for a batch slot", () => s()?.queued ?? 0));
    this.registry.add(new Gauge("llamacpp:kv_cache_tokens", "Positions held in the KV cache, all slots", () => s()?.kvUse.total ?? 0));
    this.registry.add(new Gauge("gemma_edge_prompt_cache_tokens", "Positions held by finished sequences kept for the prompt cache", () => s()?.kvUse.kept ?? 0));
    this.registry.add(new Gauge("gemma_edge_kv_slots", "Sequence slots with their own KV cache", () => s()?.kvUse.slots ?? 0));
  }

  attach(s: BatchScheduler): void {
    this.scheduler = s;
    s.onStep = (info: StepInfo) => this.step(info);
  }

  private step(i: StepInfo): void {
    this.stepDuration.observe(i.ms / 1000);
    this.stepSize.observe(i.sequences);
    this.prefilled.inc(i.prefillTokens);
    if (i.ms > 0) this.tokensPerSecond.set(((i.decodeTokens + i.prefillTokens) * 1000) / i.ms);
  }

  /** A request got a slot after `queuedMs`; `id`: a key for its inference duration. */
  started(id: number, queuedMs: number, cachedTokens: number): void {
    this.queueDuration.observe(queuedMs / 1000);
    this.cacheHits.inc(cachedTokens);
    this.started_.set(id, Date.now());
  }

  finished(id: number, promptTokens: number, completionTokens: number): void {
    const t = this.started_.get(id);
    this.started_.delete(id);
    if (t !== undefined) this.inferenceDuration.observe((Date.now() - t) / 1000);
    this.inputLength.observe(promptTokens);
    this.generatedTokens.observe(completionTokens);
    this.promptTokens.inc(promptTokens);
    this.predicted.inc(completionTokens);
    this.success.inc();
  }

  failed(kind: string, id?: number): void {
    if (id !== undefined) this.started_.delete(id);
    this.failure.inc(1, { err: kind });
  }

  text(): string {
    return this.registry.text();
  }
}
