// Serving an asyncplugin envelope method on @grpc/grpc-js, with the protocol rules applied.
//
// No grpc-tools code generation: a grpc-js generic service definition whose (de)serializers are
// the protobuf-es bindings. The request arrives as raw bytes and is decoded here, so a malformed
// or rule-breaking request is answered INVALID_ARGUMENT naming the rule (plugin.proto: "a plugin
// SDK answers INVALID_ARGUMENT naming the rule"). The plugin's own answer is checked before it is
// sent: an answer that breaks a rule is a plugin bug and is answered INTERNAL naming the rule,
// never sent as is (unless validation is turned off for a deliberate `--break`).
//
// Typed RPCs: any unary method whose messages follow the envelope convention is wire-identical to
// PluginService.Invoke, so the same handler serves it (see `envelopeService`).

import * as grpc from "@grpc/grpc-js";
import { toBinary } from "@bufbuild/protobuf";
import type { DescMethod } from "@bufbuild/protobuf";

import {
  InvokeResponseSchema,
  PluginService,
  type InvokeRequest,
  type InvokeResponse,
} from "../gen/asyncplugin/v1/plugin_pb.js";
import { decodeRequest, LIMITS, ProtocolViolation, responseViolations } from "./validate.js";

/** What a handler may use besides the request. */
export interface CallContext {
  /** Aborted when the caller gives up on the call (deadline exceeded or cancelled). */
  signal: AbortSignal;
  /** The call's metadata (headers). */
  metadata: grpc.Metadata;
}

/** A plugin: answers one call of an envelope method. */
export type InvokeHandler = (
  request: InvokeRequest,
  context: CallContext,
) => InvokeResponse | Promise<InvokeResponse>;

export interface ServeOptions {
  /** Check every answer against the protocol rules before sending it (default true). */
  validateAnswers?: boolean;
  /** When set, every call must carry metadata `authorization: Bearer <token>`. */
  token?: string;
  /** Where to report refused calls and plugin bugs (default: stderr). */
  log?: (line: string) => void;
}

/** The full gRPC path of the generic method: "/asyncplugin.v1.PluginService/Invoke". */
export const INVOKE_PATH = methodPath(PluginService.method.invoke);

/** The gRPC path of a method descriptor, "/<package>.<Service>/<Method>". */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A grpc-js method definition for an envelope method: raw request bytes in, InvokeResponse out. */
export function envelopeMethod(path: string): grpc.MethodDefinition<Uint8Array, InvokeResponse> {
  return {
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: (value: Uint8Array) => toBuffer(value),
    requestDeserialize: (bytes: Buffer) => bytes,
    responseSerialize: (value: InvokeResponse) => toBuffer(toBinary(InvokeResponseSchema, value)),
    responseDeserialize: (bytes: Buffer) => bytes as never,
  };
}

/** A one-method grpc-js service definition for `path` ("/pkg.Service/Method"). */
export function envelopeService(path: string): grpc.ServiceDefinition {
  const name = path.slice(path.lastIndexOf("/") + 1);
  return { [name]: envelopeMethod(path) } as grpc.ServiceDefinition;
}

/** Wraps a handler as a grpc-js unary implementation that applies the protocol rules. */
export function unaryImplementation(
  handler: InvokeHandler,
  options: ServeOptions = {},
): grpc.handleUnaryCall<Buffer, InvokeResponse> {
  const validate = options.validateAnswers ?? true;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const expectedAuth = options.token === undefined ? undefined : `Bearer ${options.token}`;

  return (call, callback) => {
    const path = call.getPath();
    if (expectedAuth !== undefined && call.metadata.get("authorization")[0] !== expectedAuth) {
      callback({ code: grpc.status.UNAUTHENTICATED, details: "missing or wrong bearer token" });
      return;
    }
    let request: InvokeRequest;
    try {
      request = decodeRequest(call.request);
    } catch (err) {
      const violation =
        err instanceof ProtocolViolation
          ? err
          : new ProtocolViolation("MALFORMED_MESSAGE", String((err as Error)?.message ?? err));
      log(`${path}: refused a request: ${violation.message}`);
      callback(ruleStatus(grpc.status.INVALID_ARGUMENT, violation));
      return;
    }
    const controller = new AbortController();
    const onCancel = (): void => controller.abort();
    call.once("cancelled", onCancel);
    Promise.resolve()
      .then(() => handler(request, { signal: controller.signal, metadata: call.metadata }))
      .then(
        (response) => {
          if (validate) {
            const [violation] = responseViolations(response, {
              cancelRequested: request.cancelRequested,
            });
            if (violation !== undefined) {
              log(`${path}: the plugin's answer breaks a rule, not sent: ${violation.message}`);
              callback(ruleStatus(grpc.status.INTERNAL, violation));
              return;
            }
          }
          callback(null, response);
        },
        (err: unknown) => {
          const message = err instanceof Error ? err.message : String(err);
          log(`${path}: the plugin raised: ${message}`);
          callback({ code: grpc.status.UNKNOWN, details: `plugin error: ${message}` });
        },
      )
      .finally(() => call.removeListener("cancelled", onCancel));
  };
}

function ruleStatus(code: grpc.status, violation: ProtocolViolation): grpc.ServerErrorResponse {
  const metadata = new grpc.Metadata();
  metadata.set("asyncplugin-rule", violation.rule);
  return Object.assign(new Error(violation.message), {
    code,
    details: violation.message,
    metadata,
  });
}

/** grpc-js server options: the protocol's default message size limit both ways. */
export const SERVER_OPTIONS: grpc.ServerOptions = {
  "grpc.max_receive_message_length": LIMITS.MESSAGE_MAX_BYTES,
  "grpc.max_send_message_length": LIMITS.MESSAGE_MAX_BYTES,
};

/** Registers `handler` on `server` under every path in `paths`. */
export function addEnvelopeMethods(
  server: grpc.Server,
  paths: readonly string[],
  handler: InvokeHandler,
  options: ServeOptions = {},
): void {
  const implementation = unaryImplementation(handler, options);
  for (const path of paths) {
    const name = path.slice(path.lastIndexOf("/") + 1);
    server.addService(envelopeService(path), { [name]: implementation });
  }
}
