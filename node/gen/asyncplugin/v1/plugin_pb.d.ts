// The plugin service and its envelopes: the whole asynchronous conversation between an engine and
// a plugin.
//
// One conversation, step by step:
//   1. The engine calls a unary method with `is_status_check = false`, the payload in `data`, and
//      no `status` (initiation).
//   2. The plugin answers either with `data` (the work is done: SUCCEEDED), or with `status`, a
//      Task in state RUNNING carrying `remote_status_input` (the work goes on: check back later),
//      or with `status` FAILED carrying `error`.
//   3. While the task is RUNNING, the engine calls the SAME method again with
//      `is_status_check = true`, the same `data`, and `status` set to its record of the task
//      (including the `remote_status_input` from the plugin's last answer), at increasingly
//      longer intervals, optionally steered by the plugin's `Task.check_after` hint.
//   4. The plugin answers each status check the same way as in step 2, until it answers with
//      data (SUCCEEDED) or FAILED, or the engine gives up (deadline, maximum number of checks) or
//      cancels the task.
// A plugin must always read `is_status_check` to tell new work from a status check: treating a
// status check as new work starts the remote job again.
//
// Protocol rules. Each rule has an UPPER_SNAKE name, used in error messages, in the reference
// validation module (python/asyncplugin/protocol/validate.py) and in the conformance kit:
//   - MALFORMED_MESSAGE: a message must decode as its envelope type: valid protobuf, valid
//     UTF-8 in strings, nesting within the decoder's limit, and every Timestamp and Duration
//     within its documented range.
//   - NO_DATA_OR_STATUS: an answer must set `data`, `status`, or both.
//   - STATE_UNSPECIFIED: a Task's `state` must not be TASK_STATE_UNSPECIFIED.
//   - STATE_UNKNOWN: a Task's `state` must be one of the values defined in TaskState.
//   - STATE_NOT_ALLOWED_IN_ANSWER: an answer's `status.state` must be RUNNING, SUCCEEDED, FAILED
//     or CANCELLED (WAITING is the engine's own state).
//   - DATA_WITH_UNFINISHED_STATE: an answer that sets `data` must not set a `status` whose state is
//     anything but SUCCEEDED (data means the work is done).
//   - RUNNING_WITHOUT_REMOTE_STATUS_INPUT: a RUNNING Task must carry `remote_status_input`
//     (an empty object `{}` is fine; an absent field is not).
//   - FAILED_WITHOUT_ERROR: a FAILED Task must carry `error`.
//   - ERROR_WITHOUT_FAILED: a Task that is not FAILED must not carry `error`.
//   - ERROR_WITHOUT_MESSAGE: an Error's `message` must not be empty.
//   - ERROR_TOO_DEEP: Errors nest at most 8 deep.
//   - ERROR_METADATA_TOO_LARGE: an Error's `metadata` holds at most 64 entries and 16,384 bytes of
//     keys and values together (see error.proto).
//   - CANCELLED_WITHOUT_REQUEST: a plugin answers CANCELLED only to `cancel_requested = true`.
//   - REMOTE_STATUS_INPUT_TOO_LARGE / REMOTE_STATUS_INPUT_TOO_DEEP, REMOTE_STATUS_OUTPUT_TOO_LARGE /
//     REMOTE_STATUS_OUTPUT_TOO_DEEP: see the limits in task.proto.
//   - FIELD_TOO_LONG: a string field exceeds its documented limit.
//   - NEGATIVE_CHECK_AFTER: `Task.check_after` must not be negative.
//   - PROGRESS_FRACTION_OUT_OF_RANGE, PROGRESS_NEGATIVE, PROGRESS_DONE_EXCEEDS_TOTAL: see Progress.
//   - STATUS_CHECK_WITHOUT_STATUS: a request with `is_status_check = true` must carry `status`
//     with `remote_status_input` (engine side).
//   - CHECK_NUMBER_MISMATCH: `context.check_number` is 0 on initiation and at least 1 on a status
//     check (engine side).
// A side that receives a message breaking a rule treats it as a protocol violation: the engine
// fails that task (and only that task) with an Error whose `code` is "PROTOCOL_VIOLATION" and
// whose `metadata["rule"]` names the rule; a plugin SDK answers INVALID_ARGUMENT naming the rule.
//
// Typed RPCs (wire compatibility with the generic envelope). The engine can drive ANY unary
// method whose request and response follow this envelope convention, not only
// PluginService.Invoke, because status checks go to the same method that started the work. A
// plugin may therefore declare its own typed method, for example
//
//     service TranscriberService {
//       rpc Transcribe(TranscribeRequest) returns (TranscribeResponse);
//     }
//     message TranscribeRequest {
//       TranscribeInput data = 1;                     // the typed payload
//       asyncplugin.v1.RequestContext context = 2;    // fields 2..5 copied from InvokeRequest
//       asyncplugin.v1.Task status = 3;
//       bool is_status_check = 4;
//       bool cancel_requested = 5;
//     }
//     message TranscribeResponse {
//       Transcript data = 1;                          // the typed result
//       asyncplugin.v1.Task status = 2;
//     }
//
// This works because, on the wire, an embedded message field and a `bytes` field of the same
// number are encoded identically (wire type 2, length-delimited; the bytes hold the encoded
// message). The generic envelopes below carry the payload as `optional bytes data = 1`, so the
// engine sends and receives the typed payload's bytes without knowing its type, and field
// presence survives the trip (an empty message sent as `data` is still "data present").
// Rules for typed envelopes: field 1 is the payload and must be a message type (or `bytes`);
// fields 2 to 15 of a request and 2 to 15 of a response belong to this envelope and, if declared,
// must have exactly the names and types given here; a typed envelope may declare only some of
// them, in which case the plugin simply does not see the others (they are kept as unknown
// fields). JSON encodings of typed and generic envelopes differ (the generic one shows `data` as
// base64); the wire format is binary protobuf.
//
// Engine behaviour a plugin can rely on:
//   - gRPC errors. A call that fails with UNAVAILABLE, or exceeds the engine's per-check timeout
//     (DEADLINE_EXCEEDED), is retried with its own backoff and is not a plugin failure; so is a
//     CANCELLED the engine did not ask for and that carries no rich error details (a server
//     refuses calls that way while it shuts down gracefully). Any other gRPC error fails the
//     task with the google.rpc.Status mapped into an Error as described in error.proto. A
//     retried initiating call carries the same idempotency key, so a plugin can drop a
//     duplicate start.
//   - Authentication: an engine sends a per-plugin bearer token, if configured, as call metadata
//     `authorization: Bearer <token>`.
//   - Message size: engines and plugins accept messages of up to 4 MiB by default; larger
//     answers fail the task (code "MESSAGE_TOO_LARGE").

// @generated by protoc-gen-es v2.17.0 with parameter "target=js+dts,import_extension=js"
// @generated from file asyncplugin/v1/plugin.proto (package asyncplugin.v1, syntax proto3)
/* eslint-disable */

import type { GenFile, GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import type { Message } from "@bufbuild/protobuf";
import type { Task } from "./task_pb.js";
import type { Timestamp } from "@bufbuild/protobuf/wkt";

/**
 * Describes the file asyncplugin/v1/plugin.proto.
 */
export declare const file_asyncplugin_v1_plugin: GenFile;

/**
 * InvokeRequest is the request envelope. Every field is set by the engine.
 *
 * @generated from message asyncplugin.v1.InvokeRequest
 */
export declare type InvokeRequest = Message<"asyncplugin.v1.InvokeRequest"> & {
  /**
   * The payload: the encoded bytes of the plugin method's input message. The engine sends the
   * same payload on the initiating call and on every status check, so a plugin that needs the
   * input again need not stash it in `remote_status_input`. A typed request declares its input
   * message type at this field number instead (see "Typed RPCs" above).
   *
   * @generated from field: optional bytes data = 1;
   */
  data?: Uint8Array | undefined;

  /**
   * Who is calling and for which task: identities, the idempotency key, the check number and
   * the deadline.
   *
   * @generated from field: asyncplugin.v1.RequestContext context = 2;
   */
  context?: RequestContext | undefined;

  /**
   * The engine's last record of the task. Absent on the initiating call. On a status check it is
   * the Task the plugin last answered, with its `remote_status_input` exactly as the plugin sent
   * it and the engine-owned fields filled in.
   *
   * @generated from field: asyncplugin.v1.Task status = 3;
   */
  status?: Task | undefined;

  /**
   * True when this call is a status check of work the plugin already started; false when it is
   * new work. A plugin must read this on every call.
   *
   * @generated from field: bool is_status_check = 4;
   */
  isStatusCheck: boolean;

  /**
   * True when the engine is cancelling the task. Sent on a status check (with
   * `is_status_check = true` and `status`), after which the engine records the task CANCELLED
   * whatever the answer. A plugin should stop the remote work, if it can, and answer CANCELLED
   * (or FAILED if stopping failed). The engine sends this at most once per task, best effort.
   *
   * @generated from field: bool cancel_requested = 5;
   */
  cancelRequested: boolean;
};

/**
 * Describes the message asyncplugin.v1.InvokeRequest.
 * Use `create(InvokeRequestSchema)` to create a new message.
 */
export declare const InvokeRequestSchema: GenMessage<InvokeRequest>;

/**
 * InvokeResponse is the response envelope. Every field is set by the plugin. At least one of
 * `data` and `status` must be set (rule NO_DATA_OR_STATUS).
 *
 * @generated from message asyncplugin.v1.InvokeResponse
 */
export declare type InvokeResponse = Message<"asyncplugin.v1.InvokeResponse"> & {
  /**
   * The result: the encoded bytes of the plugin method's output message. Setting it means the
   * work is done (SUCCEEDED); `status`, if also set, must then be SUCCEEDED. A typed response
   * declares its output message type at this field number instead.
   *
   * @generated from field: optional bytes data = 1;
   */
  data?: Uint8Array | undefined;

  /**
   * The state of the work. RUNNING means "asynchronous, check back" and must carry
   * `remote_status_input`; FAILED must carry `error`; SUCCEEDED without `data` means the work
   * is done and has no output.
   *
   * @generated from field: asyncplugin.v1.Task status = 2;
   */
  status?: Task | undefined;
};

/**
 * Describes the message asyncplugin.v1.InvokeResponse.
 * Use `create(InvokeResponseSchema)` to create a new message.
 */
export declare const InvokeResponseSchema: GenMessage<InvokeResponse>;

/**
 * RequestContext identifies the caller and the task, and carries per-call facts the plugin may
 * use. Every field is set by the engine.
 *
 * @generated from message asyncplugin.v1.RequestContext
 */
export declare type RequestContext = Message<"asyncplugin.v1.RequestContext"> & {
  /**
   * The name under which the engine knows this plugin (for example "transcriber"). May be empty
   * when the engine was given only an address.
   *
   * @generated from field: string plugin_id = 1;
   */
  pluginId: string;

  /**
   * The name of the plugin instance (one configured deployment of the plugin) the engine calls.
   * May be empty.
   *
   * @generated from field: string plugin_instance_id = 2;
   */
  pluginInstanceId: string;

  /**
   * The engine's task id; the same on the initiating call and on every status check.
   *
   * @generated from field: string task_id = 3;
   */
  taskId: string;

  /**
   * A key that is the same on every call for this task and unique across tasks. A plugin that
   * starts remote work should pass it to the remote system as its idempotency key, or remember
   * it, so that an initiating call the engine repeats (after a crash between sending the call
   * and recording the answer) does not start the work twice.
   *
   * @generated from field: string idempotency_key = 4;
   */
  idempotencyKey: string;

  /**
   * The sequence number of this call: 0 on the initiating call, then 1, 2, 3... on successive
   * status checks. A transport retry of one check keeps its number.
   *
   * @generated from field: int32 check_number = 5;
   */
  checkNumber: number;

  /**
   * The absolute time after which the engine gives up on the task and records it FAILED with
   * code "DEADLINE_EXCEEDED". Unset when the task has no deadline. A plugin may use it to bound
   * its own remote work.
   *
   * @generated from field: google.protobuf.Timestamp deadline = 6;
   */
  deadline?: Timestamp | undefined;

  /**
   * The engine's name and version, for diagnostics (for example "asyncplugin-python/0.1.0").
   *
   * @generated from field: string engine = 7;
   */
  engine: string;

  /**
   * Where the plugin, or the webhook handler of the remote system it wraps, can reach the
   * engine's asyncplugin.engine.v1.EngineService to finish this task at once (CompleteTask) or
   * report progress (UpdateTask), as "host:port". Empty when the engine offers no push
   * completion; status checks go on either way, as the safety net.
   *
   * @generated from field: string engine_address = 8;
   */
  engineAddress: string;

  /**
   * An unguessable token bound to this task that authorizes CompleteTask and UpdateTask for it
   * and for nothing else. It may differ from call to call (each one is freshly signed and
   * expires); any recent one works. Empty exactly when `engine_address` is empty. Treat it as a
   * secret: keep it with the remote job (for example in the webhook URL the remote system calls
   * back), never log it.
   *
   * @generated from field: string completion_token = 9;
   */
  completionToken: string;
};

/**
 * Describes the message asyncplugin.v1.RequestContext.
 * Use `create(RequestContextSchema)` to create a new message.
 */
export declare const RequestContextSchema: GenMessage<RequestContext>;

/**
 * PluginService is the generic asynchronous plugin endpoint. A plugin that does not need a typed
 * payload implements this service; any other unary method that follows the envelope convention
 * (see the top of this file) is driven the same way.
 *
 * @generated from service asyncplugin.v1.PluginService
 */
export declare const PluginService: GenService<{
  /**
   * Invoke starts new work (`is_status_check = false`) or checks on work already started
   * (`is_status_check = true`). The plugin answers with data (SUCCEEDED), a RUNNING Task (check
   * back later), or a FAILED Task carrying the error envelope.
   *
   * @generated from rpc asyncplugin.v1.PluginService.Invoke
   */
  invoke: {
    methodKind: "unary";
    input: typeof InvokeRequestSchema;
    output: typeof InvokeResponseSchema;
  },
}>;

