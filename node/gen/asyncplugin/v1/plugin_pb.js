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

import { fileDesc, messageDesc, serviceDesc } from "@bufbuild/protobuf/codegenv2";
import { file_asyncplugin_v1_task } from "./task_pb.js";
import { file_google_protobuf_timestamp } from "@bufbuild/protobuf/wkt";

/**
 * Describes the file asyncplugin/v1/plugin.proto.
 */
export const file_asyncplugin_v1_plugin = /*@__PURE__*/
  fileDesc("Chthc3luY3BsdWdpbi92MS9wbHVnaW4ucHJvdG8SDmFzeW5jcGx1Z2luLnYxIrUBCg1JbnZva2VSZXF1ZXN0EhEKBGRhdGEYASABKAxIAIgBARIvCgdjb250ZXh0GAIgASgLMh4uYXN5bmNwbHVnaW4udjEuUmVxdWVzdENvbnRleHQSJAoGc3RhdHVzGAMgASgLMhQuYXN5bmNwbHVnaW4udjEuVGFzaxIXCg9pc19zdGF0dXNfY2hlY2sYBCABKAgSGAoQY2FuY2VsX3JlcXVlc3RlZBgFIAEoCEIHCgVfZGF0YSJSCg5JbnZva2VSZXNwb25zZRIRCgRkYXRhGAEgASgMSACIAQESJAoGc3RhdHVzGAIgASgLMhQuYXN5bmNwbHVnaW4udjEuVGFza0IHCgVfZGF0YSLvAQoOUmVxdWVzdENvbnRleHQSEQoJcGx1Z2luX2lkGAEgASgJEhoKEnBsdWdpbl9pbnN0YW5jZV9pZBgCIAEoCRIPCgd0YXNrX2lkGAMgASgJEhcKD2lkZW1wb3RlbmN5X2tleRgEIAEoCRIUCgxjaGVja19udW1iZXIYBSABKAUSLAoIZGVhZGxpbmUYBiABKAsyGi5nb29nbGUucHJvdG9idWYuVGltZXN0YW1wEg4KBmVuZ2luZRgHIAEoCRIWCg5lbmdpbmVfYWRkcmVzcxgIIAEoCRIYChBjb21wbGV0aW9uX3Rva2VuGAkgASgJMlgKDVBsdWdpblNlcnZpY2USRwoGSW52b2tlEh0uYXN5bmNwbHVnaW4udjEuSW52b2tlUmVxdWVzdBoeLmFzeW5jcGx1Z2luLnYxLkludm9rZVJlc3BvbnNlYgZwcm90bzM", [file_asyncplugin_v1_task, file_google_protobuf_timestamp]);

/**
 * Describes the message asyncplugin.v1.InvokeRequest.
 * Use `create(InvokeRequestSchema)` to create a new message.
 */
export const InvokeRequestSchema = /*@__PURE__*/
  messageDesc(file_asyncplugin_v1_plugin, 0);

/**
 * Describes the message asyncplugin.v1.InvokeResponse.
 * Use `create(InvokeResponseSchema)` to create a new message.
 */
export const InvokeResponseSchema = /*@__PURE__*/
  messageDesc(file_asyncplugin_v1_plugin, 1);

/**
 * Describes the message asyncplugin.v1.RequestContext.
 * Use `create(RequestContextSchema)` to create a new message.
 */
export const RequestContextSchema = /*@__PURE__*/
  messageDesc(file_asyncplugin_v1_plugin, 2);

/**
 * PluginService is the generic asynchronous plugin endpoint. A plugin that does not need a typed
 * payload implements this service; any other unary method that follows the envelope convention
 * (see the top of this file) is driven the same way.
 *
 * @generated from service asyncplugin.v1.PluginService
 */
export const PluginService = /*@__PURE__*/
  serviceDesc(file_asyncplugin_v1_plugin, 0);

