/**
 * A real gRPC server and client (@grpc/grpc-js) for the tests, without
 * .proto files: the messages are raw bytes (identity serialisation), the
 * service is /test.Echo with one method of each kind.
 *
 *   Unary         echoes the request; metadata `fail: <code>` answers that
 *                 status instead; `hold: <id>` waits for release(id)
 *   ServerStream  sends the request back `count` times (metadata, default 3),
 *                 `gap-ms` apart (default 0)
 *   ClientStream  answers the concatenation of what it received
 *   Bidi          echoes each message as it arrives
 *
 * Every answer carries the trailer `x-trailer: <method>`.
 */
import grpc from '@grpc/grpc-js';

const bytes = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const method = (name: string, requestStream: boolean, responseStream: boolean) => ({
  path: `/test.Echo/${name}`,
  requestStream,
  responseStream,
  requestSerialize: bytes.serialize,
  requestDeserialize: bytes.deserialize,
  responseSerialize: bytes.serialize,
  responseDeserialize: bytes.deserialize,
});

export const ECHO_SERVICE = {
  unary: method('Unary', false, false),
  serverStream: method('ServerStream', false, true),
  clientStream: method('ClientStream', true, false),
  bidi: method('Bidi', true, true),
} as const;

export interface EchoServer {
  readonly port: number;
  /** Unary calls waiting for release. */
  holding(): number;
  releaseAll(): void;
  close(): Promise<void>;
}

const trailer = (name: string) => {
  const m = new grpc.Metadata();
  m.set('x-trailer', name);
  return m;
};

const first = (md: grpc.Metadata, key: string): string | undefined => {
  const v = md.get(key)[0];
  return v === undefined ? undefined : String(v);
};

export async function startEchoServer(): Promise<EchoServer> {
  const held: (() => void)[] = [];
  const server = new grpc.Server();
  server.addService(ECHO_SERVICE as unknown as grpc.ServiceDefinition, {
    unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const fail = first(call.metadata, 'fail');
      const answer = () =>
        fail !== undefined ? cb({ code: Number(fail), details: 'the server says no', metadata: trailer('unary') }) : cb(null, call.request, trailer('unary'));
      if (first(call.metadata, 'hold') !== undefined) held.push(answer);
      else answer();
    },
    serverStream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      const count = Number(first(call.metadata, 'count') ?? 3);
      const gap = Number(first(call.metadata, 'gap-ms') ?? 0);
      let sent = 0;
      const next = () => {
        if (sent === count) return call.end(trailer('serverStream'));
        call.write(call.request);
        sent++;
        setTimeout(next, gap);
      };
      next();
    },
    clientStream: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const got: Buffer[] = [];
      call.on('data', (b: Buffer) => got.push(b));
      call.on('end', () => cb(null, Buffer.concat(got), trailer('clientStream')));
    },
    bidi: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (b: Buffer) => call.write(b));
      call.on('end', () => call.end(trailer('bidi')));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    holding: () => held.length,
    releaseAll: () => {
      for (const f of held.splice(0)) f();
    },
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

/** The client constructor for ECHO_SERVICE: `new EchoClient('127.0.0.1:port', grpc.credentials.createInsecure())`. */
export const EchoClient = grpc.makeGenericClientConstructor(ECHO_SERVICE as unknown as grpc.ServiceDefinition, 'Echo');
export type EchoClientType = InstanceType<typeof EchoClient>;

export interface CallResult {
  readonly error: grpc.ServiceError | null;
  readonly value: Buffer | null;
  readonly trailers: grpc.Metadata | null;
}

/** A unary call; resolves with its error or value and the trailers (status metadata). */
export function unary(client: EchoClientType, body: string, md: Record<string, string> = {}, options: grpc.CallOptions = {}): Promise<CallResult> {
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(md)) metadata.set(k, v);
  return new Promise((resolve) => {
    let trailers: grpc.Metadata | null = null;
    const call = (client as unknown as Record<string, (...a: unknown[]) => grpc.ClientUnaryCall>)['unary']!(
      Buffer.from(body),
      metadata,
      options,
      (error: grpc.ServiceError | null, value?: Buffer) => setImmediate(() => resolve({ error, value: value ?? null, trailers: error?.metadata ?? trailers })),
    );
    call.on('status', (s: grpc.StatusObject) => (trailers = s.metadata));
  });
}
