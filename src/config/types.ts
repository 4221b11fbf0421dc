/**
 * The validated, defaulted, frozen configuration: the one shape the rest of
 * the program reads. Produced by `loadConfig()` (src/config/load.ts) from the
 * YAML policy file; never mutated after load. Field names follow the YAML
 * keys (the public contract, see config.example.yaml); everything that has a
 * default in YAML is required here.
 */

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
export type Mode = 'enforce' | 'shadow';
export type LimitAlgorithm = 'little' | 'fixed' | 'aimd' | 'gradient' | 'vegas';

export interface Listen {
  readonly host: string;
  readonly port: number; // 0..65535; 0 = ephemeral (tests)
}

/**
 * The certificate material of `listen.tls`, read and checked when the config
 * is loaded (config/tls-files.ts): PEM text, so a reload can tell whether it
 * changed. It never appears in JSON (toJSON names the files only).
 */
export interface TlsMaterial {
  readonly cert: string;
  readonly key: string;
  readonly ca?: string;
  /** SHA-256 fingerprint of the leaf certificate (AA:BB:...). */
  readonly fingerprint: string;
  readonly subject: string;
  /** The leaf certificate's notAfter (ISO 8601). */
  readonly notAfter: string;
  toJSON(): unknown;
}

/** `listen.tls`: TLS termination on the proxy listener (protocols/tls.ts). */
export interface TlsConfig {
  /** Absolute paths (relative ones are resolved against the config file's directory). */
  readonly certFile: string;
  readonly keyFile: string;
  /** Clients must present a certificate signed by one of these CAs (mutual TLS). */
  readonly caFile?: string;
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3'; // TLSv1.2
  readonly material: TlsMaterial;
}

/** The proxy listener: its address, TLS, and HTTP/2 (ALPN h2 over TLS, h2c by prior knowledge in plaintext). */
export interface ProxyListen extends Listen {
  readonly tls?: TlsConfig;
  readonly http2: boolean; // false
}

/** The admin listener: its address and what guards its browser-facing and POST endpoints (observability/admin-guard.ts). */
export interface AdminConfig extends Listen {
  /** Host names accepted in Host (and Origin) besides the listener's own addresses and localhost; lower-cased. Default []. */
  readonly allowedHosts: readonly string[];
  /** Bearer token the POST endpoints require. Without one, POST is refused unless the listener is on loopback. */
  readonly token?: string;
}

export interface QueueConfig {
  readonly maxLength: number; // >= 0; 0 = never queue, refuse when no slot
  readonly maxWaitMs: number; // > 0
  /** Serve waiters round-robin across client keys (deficit round robin) instead of first come first served. Default true. */
  readonly fair: boolean;
}

export interface LaneConfig {
  readonly name: string;
  /** Cap on this lane's in-flight count as a fraction of the route limit (0 < x <= 1). Default 1. */
  readonly maxShare: number;
  /** Reserved fraction served ahead of higher lanes while below it (0 <= x <= maxShare). Default 0. */
  readonly minShare: number;
  readonly queue: QueueConfig;
}

export interface ClassifyWhen {
  readonly header?: { readonly name: string; readonly value: string }; // name lower-cased at load
  readonly pathPrefix?: string;
  readonly methods?: readonly string[]; // upper-cased at load
  readonly clientKeys?: readonly string[]; // exact client keys (as computed by clients.key)
}

export interface ClassifyRule {
  readonly lane: string;
  readonly laneIndex: number; // index into the lanes list (resolved at load)
  readonly when: ClassifyWhen;
}

export type ClientKeySource = { readonly header: string } | { readonly ip: true };

export interface ClientsConfig {
  readonly key: ClientKeySource; // header name lower-cased at load
  readonly maxShare: number; // 0 < x <= 1; default 0.5
  readonly rate?: ClientRateConfig;
  /** IETF RateLimit-Policy / RateLimit headers on 429 client_rate and on admitted responses of a rate-limited client. Default false. */
  readonly rateLimitHeaders: boolean;
  /** DRR weights in fair lanes, by client key (> 0; unlisted clients weigh 1). Default {}. */
  readonly weights: Readonly<Record<string, number>>;
}

export interface ClientRateConfig {
  readonly perSecond: number;
  readonly burst: number;
  /** Absent: the buckets are local to the process. */
  readonly store?: RateStoreConfig;
}

/** clients.rate.store: the quota shared by every instance, in Redis. */
export interface RateStoreConfig {
  readonly redis: {
    readonly url: string; // redis:// or rediss://
    readonly timeoutMs: number; // 20: longest a request waits for Redis before the local bucket decides
    readonly prefix: string; // 'sluice:rate:'
  };
  /** Instances sharing the quota (the local fallback runs at rate / instances). Default 1. */
  readonly instances: number;
}

export interface RetryAfterConfig {
  readonly minSeconds: number; // integer >= 1
  readonly maxSeconds: number; // integer >= minSeconds
  readonly jitter: number; // 0..1, fraction of the estimate
}

export interface WindowConfig {
  readonly minSamples: number; // default 10
  readonly windowMs: number; // default 100 (also the length of the shed-state signal window)
  readonly percentile: number; // 0 < p < 1, default 0.5
}

export interface LimitConfig {
  readonly algorithm: LimitAlgorithm; // default little
  readonly initial: number; // default 32
  readonly min: number; // default 1
  readonly max: number; // default 1000
  readonly window: WindowConfig;
  readonly overloadStatuses: readonly number[]; // default [429, 503, 504]
  readonly aimd: { readonly backoff: number; readonly increase: number }; // 0.9, 1
  readonly gradient: {
    readonly tolerance: number; // 1
    readonly longWindow: number; // 600 (windows between baseline probes)
    readonly smoothing: number; // 0.2
    readonly queueAllowance: 'sqrt' | number; // 'sqrt'
  };
  readonly vegas: { readonly alpha: number; readonly beta: number }; // 3, 6
  readonly little: {
    readonly queue: number; // 0.3 (standing queue allowance: queue * sqrt(useful concurrency))
    readonly growth: number; // 1 (at most x2 per increase while the RTT shows headroom)
    readonly probeEvery: number; // 30 (windows between routine baseline probes)
  };
  readonly hysteresis: { readonly increaseAfterWindows: number; readonly deadBand: number }; // 2, 0.05
}

export interface OverloadConfig {
  readonly signal: 'queueWaitP90';
  readonly enterMs: number; // 100
  readonly exitMs: number; // 20 (< enterMs)
  readonly cooldownMs: number; // 5000
}

export interface TimeoutsConfig {
  readonly connectMs: number; // 2000
  readonly headersMs: number; // 30000
  readonly bodyMs: number; // 30000
}

export interface DeadlineConfig {
  readonly header: string; // lower-cased; e.g. x-request-timeout-ms
  readonly format: 'ms' | 'grpc-timeout'; // default ms
}

export interface CircuitBreakerConfig {
  readonly enabled: boolean; // default true
  readonly consecutiveFailures: number; // 5
  readonly failureRatio: number; // 0.5
  readonly minRequests: number; // 20 (in the ratio window)
  readonly windowMs: number; // 10000
  readonly openMs: number; // 5000
  readonly maxOpenMs: number; // 60000 (openMs backs off up to this)
  readonly halfOpenRatio: number; // 0.05
  readonly closeAfterSuccesses: number; // 5
}

/**
 * What Sluice tells the upstream about the client, and whom it believes
 * about the client (see src/proxy/headers.ts and client-address.ts).
 * Top-level `forwarding:`, overridden by `defaults.forwarding` and then by
 * the route's own (lists replace, mappings merge).
 */
export interface ForwardingConfig {
  /** Peers whose forwarding headers are believed: addresses, CIDRs, or loopback/private/linklocal. Default []. */
  readonly trustedProxies: readonly string[];
  readonly xForwardedFor: 'append' | 'replace' | 'off'; // append
  readonly xForwardedProto: boolean; // true
  readonly xForwardedHost: boolean; // true
  /** The Via pseudonym (`Via: 1.1 <pseudonym>`), or false for no Via. Default 'sluice' (`via: true`). */
  readonly via: string | false;
  /** RFC 7239 Forwarded. Default false. */
  readonly forwarded: boolean;
}

export interface RouteConfig {
  readonly name: string;
  readonly match: {
    readonly pathPrefix: string; // starts with '/'
    readonly host?: string; // lower-cased, no port
    readonly methods?: readonly string[]; // upper-cased
  };
  /** Origin only: scheme://host[:port], no path, query or credentials. */
  readonly upstream: string;
  readonly mode: Mode;
  readonly limit: LimitConfig;
  readonly overload: OverloadConfig;
  readonly timeouts: TimeoutsConfig;
  /** The global lanes, in the same order, with this route's overrides merged in. */
  readonly lanes: readonly LaneConfig[];
  readonly deadline?: DeadlineConfig;
  readonly circuitBreaker: CircuitBreakerConfig;
  readonly forwarding: ForwardingConfig;
  /** Send the client's Host upstream instead of the upstream's own. Default false. */
  readonly preserveHost: boolean;
  /**
   * Not a YAML key: set only in one worker's share of the config
   * (core/split.ts, `workers` > 1) for a fixed limit: this worker's exact part
   * of the route's per-client slots, max(1, ceil(clients.maxShare x limit)).
   * Absent: the limiter derives them from its own limit.
   */
  readonly clientSlots?: number;
  /** Speak HTTP/2 to the upstream: https:// by ALPN, http:// by prior knowledge (h2c). Default false. */
  readonly http2: boolean;
  /** Absent: WebSocket upgrades on this route are forwarded as ordinary requests (without Upgrade). */
  readonly websocket?: WebSocketConfig;
}

/** `routes[].websocket`: the route proxies WebSocket upgrades (proxy/websocket.ts). */
export interface WebSocketConfig {
  /** Open WebSockets on this route at most (per process); an upgrade past it is refused 503 websocket_limit. */
  readonly maxOpen: number; // 1000
  /** A WebSocket with no byte either way for this long is closed (1001). */
  readonly idleTimeoutMs: number; // 300000
}

/**
 * The proxy listener's protection against slow and oversized requests
 * (slow-loris, header floods). Node's HTTP server enforces these.
 */
export interface ServerConfig {
  readonly headersTimeoutMs: number; // 10000: request line + headers must arrive within this, else 408 and close
  readonly requestTimeoutMs: number; // 300000: the whole request, body included (>= headersTimeoutMs)
  readonly keepAliveTimeoutMs: number; // 72000: idle keep-alive client connections close after this
  readonly maxHeaderBytes: number; // 16384: a larger request head gets 431
  readonly maxHeaderCount: number; // 200: more request header fields get 431 (never a truncated request)
  readonly bodyIdleTimeoutMs: number; // 30000: an admitted request's body silent this long gets 408; 0 = off
  readonly http2: Http2ServerConfig;
}

/** `server.http2`: bounds of an HTTP/2 client connection (protocols/h2-server.ts). */
export interface Http2ServerConfig {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: streams (requests) open at once on one connection. */
  readonly maxConcurrentStreams: number; // 100
  /** SETTINGS_MAX_HEADER_LIST_SIZE: a request's header list (HPACK-decoded, RFC 9113 §6.5.2 counting). */
  readonly maxHeaderListBytes: number; // 65536
  /**
   * Rapid reset (CVE-2023-44487): a connection whose client-reset streams
   * outnumber its completed ones by more than this is closed (GOAWAY
   * ENHANCE_YOUR_CALM).
   */
  readonly maxExcessResets: number; // 100
}

export interface AccessLogConfig {
  readonly enabled: boolean; // false
  /** Share of requests logged, 0..1. Default 1. */
  readonly sample: number;
}

export interface Config {
  /** Absolute path of the file this was loaded from ('' when built in code). */
  readonly file: string;
  readonly mode: Mode; // default enforce
  /**
   * Processes serving the proxy port (default 1: one process, no cluster).
   * `auto` in the file is resolved at load to os.availableParallelism().
   * In a worker's share of the config (core/split.ts) this stays the total.
   */
  readonly workers: number;
  readonly listen: ProxyListen; // 0.0.0.0:8080
  readonly admin: AdminConfig; // 127.0.0.1:9901
  readonly server: ServerConfig;
  readonly log: { readonly level: LogLevel; readonly pretty: boolean; readonly access: AccessLogConfig };
  /** For requests that match no route (their client address in logs); each route has its own merged copy. */
  readonly forwarding: ForwardingConfig;
  readonly lanes: readonly LaneConfig[];
  readonly classify: readonly ClassifyRule[];
  readonly clients: ClientsConfig;
  readonly retryAfter: RetryAfterConfig;
  readonly readiness: { readonly maxBacklogSeconds: number }; // 10
  readonly shutdown: { readonly readinessGraceMs: number; readonly drainTimeoutMs: number }; // 5000, 30000
  readonly routes: readonly RouteConfig[];
}

/** One problem found in a config file. `line`/`col` are 1-based; 0 when unknown. */
export interface ConfigProblem {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly path: string; // dotted, e.g. routes.0.limit.min
  readonly message: string;
}
