// The protocol rules of asyncplugin v1, for Node.js: the same rule names, checks and limits as the
// reference Python module (python/asyncplugin/protocol/validate.py). Every rule is documented in
// proto/asyncplugin/v1/plugin.proto ("Protocol rules") and task.proto ("Limits").

import { fromBinary, fromJson, toBinary, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";

import type { Error as ErrorEnvelope } from "../gen/asyncplugin/v1/error_pb.js";
import {
  InvokeRequestSchema,
  InvokeResponseSchema,
  type InvokeRequest,
  type InvokeResponse,
} from "../gen/asyncplugin/v1/plugin_pb.js";
import { TaskState, type Progress, type Task } from "../gen/asyncplugin/v1/task_pb.js";

/** Size and depth limits (task.proto, error.proto). */
export const LIMITS = {
  REMOTE_STATUS_MAX_BYTES: 65_536,
  STRUCT_MAX_DEPTH: 32,
  ERROR_MAX_DEPTH: 8,
  MESSAGE_MAX_BYTES: 4 * 1024 * 1024,
  TEXT_MAX_BYTES: 4_096,
  DETAIL_MAX_BYTES: 16_384,
  CODE_MAX_BYTES: 128,
  DOMAIN_MAX_BYTES: 256,
  ERROR_METADATA_MAX_ENTRIES: 64,
  ERROR_METADATA_MAX_BYTES: 16_384,
} as const;

/** Every rule name, with a one-line statement of it. */
export const RULES = {
  MALFORMED_MESSAGE: "A message must decode as the envelope's protobuf type.",
  NO_DATA_OR_STATUS: "An answer must set data, status, or both.",
  STATE_UNSPECIFIED: "A Task's state must not be TASK_STATE_UNSPECIFIED.",
  STATE_UNKNOWN: "A Task's state must be a value defined in TaskState.",
  STATE_NOT_ALLOWED_IN_ANSWER: "An answer's state must be RUNNING, SUCCEEDED, FAILED or CANCELLED.",
  DATA_WITH_UNFINISHED_STATE: "An answer with data must not carry a non-SUCCEEDED status.",
  RUNNING_WITHOUT_REMOTE_STATUS_INPUT:
    "A RUNNING Task must carry remote_status_input ({} is fine; absent is not).",
  FAILED_WITHOUT_ERROR: "A FAILED Task must carry the error envelope.",
  ERROR_WITHOUT_FAILED: "A Task that is not FAILED must not carry an error.",
  ERROR_WITHOUT_MESSAGE: "An Error's message must not be empty.",
  ERROR_TOO_DEEP: `Errors nest at most ${LIMITS.ERROR_MAX_DEPTH} deep.`,
  ERROR_METADATA_TOO_LARGE: `An Error's metadata holds at most ${LIMITS.ERROR_METADATA_MAX_ENTRIES} entries and ${LIMITS.ERROR_METADATA_MAX_BYTES} bytes of keys and values.`,
  CANCELLED_WITHOUT_REQUEST: "A plugin answers CANCELLED only to cancel_requested = true.",
  REMOTE_STATUS_INPUT_TOO_LARGE: `remote_status_input is at most ${LIMITS.REMOTE_STATUS_MAX_BYTES} bytes serialized.`,
  REMOTE_STATUS_INPUT_TOO_DEEP: `remote_status_input nests at most ${LIMITS.STRUCT_MAX_DEPTH} levels.`,
  REMOTE_STATUS_OUTPUT_TOO_LARGE: `remote_status_output is at most ${LIMITS.REMOTE_STATUS_MAX_BYTES} bytes serialized.`,
  REMOTE_STATUS_OUTPUT_TOO_DEEP: `remote_status_output nests at most ${LIMITS.STRUCT_MAX_DEPTH} levels.`,
  FIELD_TOO_LONG: "A string field must not exceed its documented limit.",
  NEGATIVE_CHECK_AFTER: "Task.check_after must not be negative.",
  PROGRESS_FRACTION_OUT_OF_RANGE: "Progress.fraction is between 0.0 and 1.0.",
  PROGRESS_NEGATIVE: "Progress.done and Progress.total are not negative.",
  PROGRESS_DONE_EXCEEDS_TOTAL: "Progress.done does not exceed Progress.total.",
  STATUS_CHECK_WITHOUT_STATUS: "A status check carries status with remote_status_input.",
  CHECK_NUMBER_MISMATCH: "check_number is 0 on initiation and at least 1 on a status check.",
} as const;

export type Rule = keyof typeof RULES;

/** A message that breaks a named protocol rule. */
export class ProtocolViolation extends Error {
  override readonly name = "ProtocolViolation";

  constructor(
    readonly rule: Rule,
    readonly detail: string,
    readonly field = "",
  ) {
    super(`${rule}: ${detail}`);
  }
}

const ANSWER_STATES: ReadonlySet<number> = new Set([
  TaskState.RUNNING,
  TaskState.SUCCEEDED,
  TaskState.FAILED,
  TaskState.CANCELLED,
]);
const KNOWN_STATES: ReadonlySet<number> = new Set(
  Object.values(TaskState).filter((v): v is number => typeof v === "number"),
);

const TASK_TEXT_LIMITS = [
  ["statusMessage", "status_message", LIMITS.TEXT_MAX_BYTES],
  ["statusSuggestion", "status_suggestion", LIMITS.TEXT_MAX_BYTES],
  ["statusCode", "status_code", LIMITS.CODE_MAX_BYTES],
  ["remoteStatusMessage", "remote_status_message", LIMITS.TEXT_MAX_BYTES],
] as const;

const ERROR_TEXT_LIMITS = [
  ["message", "message", LIMITS.TEXT_MAX_BYTES],
  ["internalMessage", "internal_message", LIMITS.DETAIL_MAX_BYTES],
  ["suggestion", "suggestion", LIMITS.TEXT_MAX_BYTES],
  ["code", "code", LIMITS.CODE_MAX_BYTES],
  ["domain", "domain", LIMITS.DOMAIN_MAX_BYTES],
] as const;

// google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
const TIMESTAMP_SECONDS: readonly [bigint, bigint] = [-62_135_596_800n, 253_402_300_799n];
// google.protobuf.Duration: +-10,000 years, nanos of the same sign as seconds.
const DURATION_MAX_SECONDS = 315_576_000_000n;
const NANOS_MAX = 999_999_999;
const TASK_TIMESTAMPS = [
  ["createTime", "create_time"],
  ["updateTime", "update_time"],
  ["startTime", "start_time"],
  ["endTime", "end_time"],
  ["nextCheckTime", "next_check_time"],
] as const;

/** A set Timestamp outside the well-known type's range is malformed (MALFORMED_MESSAGE). */
function timestampViolations(
  value: { seconds: bigint; nanos: number } | undefined,
  field: string,
): ProtocolViolation[] {
  if (value === undefined) return [];
  const [low, high] = TIMESTAMP_SECONDS;
  if (value.seconds >= low && value.seconds <= high && value.nanos >= 0 && value.nanos <= NANOS_MAX) {
    return [];
  }
  return [
    new ProtocolViolation(
      "MALFORMED_MESSAGE",
      `${field} (${value.seconds} s, ${value.nanos} ns) is outside the range of google.protobuf.Timestamp (years 1 to 9999)`,
      field,
    ),
  ];
}

/** A Duration outside the well-known type's range, or with mixed signs, is malformed. */
function durationViolations(value: { seconds: bigint; nanos: number }, field: string): ProtocolViolation[] {
  const { seconds, nanos } = value;
  const abs = seconds < 0n ? -seconds : seconds;
  if (
    abs > DURATION_MAX_SECONDS ||
    Math.abs(nanos) > NANOS_MAX ||
    (seconds > 0n && nanos < 0) ||
    (seconds < 0n && nanos > 0)
  ) {
    return [
      new ProtocolViolation(
        "MALFORMED_MESSAGE",
        `${field} (${seconds} s, ${nanos} ns) is outside the range of google.protobuf.Duration (+-10,000 years, seconds and nanos of one sign)`,
        field,
      ),
    ];
  }
  return [];
}

function text(value: string, limit: number, field: string): ProtocolViolation[] {
  const size = Buffer.byteLength(value, "utf8");
  return size > limit
    ? [new ProtocolViolation("FIELD_TOO_LONG", `${field} is ${size} bytes; limit ${limit}`, field)]
    : [];
}

/** How deeply Structs and ListValues nest: an empty or flat object has depth 1. */
export function structDepth(struct: JsonObject): number {
  let deepest = 1;
  const stack: Array<[JsonValue, number]> = Object.values(struct).map((v) => [v, 1]);
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (Array.isArray(value)) {
      deepest = Math.max(deepest, depth + 1);
      for (const item of value) stack.push([item, depth + 1]);
    } else if (value !== null && typeof value === "object") {
      deepest = Math.max(deepest, depth + 1);
      for (const item of Object.values(value)) stack.push([item, depth + 1]);
    }
  }
  return deepest;
}

/** The serialized size of a google.protobuf.Struct holding `struct`. */
export function structByteSize(struct: JsonObject): number {
  return toBinary(StructSchema, fromJson(StructSchema, struct)).length;
}

function structViolations(
  struct: JsonObject,
  field: string,
  largeRule: Rule,
  deepRule: Rule,
): ProtocolViolation[] {
  const found: ProtocolViolation[] = [];
  const size = structByteSize(struct);
  if (size > LIMITS.REMOTE_STATUS_MAX_BYTES) {
    found.push(
      new ProtocolViolation(
        largeRule,
        `${field} is ${size} bytes serialized; limit ${LIMITS.REMOTE_STATUS_MAX_BYTES}`,
        field,
      ),
    );
  }
  const depth = structDepth(struct);
  if (depth > LIMITS.STRUCT_MAX_DEPTH) {
    found.push(
      new ProtocolViolation(
        deepRule,
        `${field} nests ${depth} levels; limit ${LIMITS.STRUCT_MAX_DEPTH}`,
        field,
      ),
    );
  }
  return found;
}

/** The metadata map's bounds: entries first, then the UTF-8 bytes of its keys and values together. */
function metadataViolations(metadata: Record<string, string>, path: string): ProtocolViolation[] {
  const field = `${path}.metadata`;
  const entries = Object.entries(metadata);
  let detail: string;
  if (entries.length > LIMITS.ERROR_METADATA_MAX_ENTRIES) {
    detail = `${entries.length} entries; limit ${LIMITS.ERROR_METADATA_MAX_ENTRIES}`;
  } else {
    let size = 0;
    for (const [key, value] of entries) size += Buffer.byteLength(key, "utf8") + Buffer.byteLength(value, "utf8");
    if (size <= LIMITS.ERROR_METADATA_MAX_BYTES) return [];
    detail = `${size} bytes of keys and values; limit ${LIMITS.ERROR_METADATA_MAX_BYTES}`;
  }
  return [new ProtocolViolation("ERROR_METADATA_TOO_LARGE", `${field} has ${detail}`, field)];
}

/** Every rule the error envelope (and its wrapped chain) breaks. */
export function errorViolations(error: ErrorEnvelope, path = "error"): ProtocolViolation[] {
  const found: ProtocolViolation[] = [];
  let current: ErrorEnvelope | undefined = error;
  let currentPath = path;
  for (let depth = 1; current !== undefined; depth++) {
    if (depth > LIMITS.ERROR_MAX_DEPTH) {
      found.push(
        new ProtocolViolation(
          "ERROR_TOO_DEEP",
          `${path} nests more than ${LIMITS.ERROR_MAX_DEPTH} Errors`,
          path,
        ),
      );
      break;
    }
    if (current.message === "") {
      found.push(
        new ProtocolViolation(
          "ERROR_WITHOUT_MESSAGE",
          `${currentPath}.message is empty`,
          `${currentPath}.message`,
        ),
      );
    }
    for (const [key, name, limit] of ERROR_TEXT_LIMITS) {
      found.push(...text(current[key], limit, `${currentPath}.${name}`));
    }
    found.push(...metadataViolations(current.metadata, currentPath));
    const wrapped: ErrorEnvelope["wrapped"] = current.wrapped;
    if (wrapped.case === "wrappedMessage") {
      found.push(...text(wrapped.value, LIMITS.DETAIL_MAX_BYTES, `${currentPath}.wrapped_message`));
      current = undefined;
    } else if (wrapped.case === "wrappedError") {
      current = wrapped.value;
      currentPath += ".wrapped_error";
    } else {
      current = undefined;
    }
  }
  return found;
}

function stateName(state: number): string {
  const name = TaskState[state as TaskState] as string | undefined;
  return name ?? String(state);
}

/** Every rule the Task breaks. `answer = true` applies the rules for a plugin's answer. */
export function taskViolations(task: Task, path = "status", answer = false): ProtocolViolation[] {
  const found: ProtocolViolation[] = [];
  const state: number = task.state;
  if (state === TaskState.UNSPECIFIED) {
    found.push(
      new ProtocolViolation(
        "STATE_UNSPECIFIED",
        `${path}.state is unset (TASK_STATE_UNSPECIFIED)`,
        `${path}.state`,
      ),
    );
  } else if (!KNOWN_STATES.has(state)) {
    found.push(
      new ProtocolViolation(
        "STATE_UNKNOWN",
        `${path}.state ${state} is not a defined TaskState`,
        `${path}.state`,
      ),
    );
  } else if (answer && !ANSWER_STATES.has(state)) {
    found.push(
      new ProtocolViolation(
        "STATE_NOT_ALLOWED_IN_ANSWER",
        `${path}.state TASK_STATE_${stateName(state)} is not allowed in a plugin's answer`,
        `${path}.state`,
      ),
    );
  }
  if (state === TaskState.RUNNING && task.remoteStatusInput === undefined) {
    found.push(
      new ProtocolViolation(
        "RUNNING_WITHOUT_REMOTE_STATUS_INPUT",
        `${path} is RUNNING but has no remote_status_input (send {} if there is nothing to stash)`,
        `${path}.remote_status_input`,
      ),
    );
  }
  if (state === TaskState.FAILED && task.error === undefined) {
    found.push(
      new ProtocolViolation(
        "FAILED_WITHOUT_ERROR",
        `${path} is FAILED but has no error envelope`,
        `${path}.error`,
      ),
    );
  }
  if (task.error !== undefined) {
    if (state !== TaskState.FAILED) {
      found.push(
        new ProtocolViolation(
          "ERROR_WITHOUT_FAILED",
          `${path} carries an error but is not FAILED`,
          `${path}.error`,
        ),
      );
    }
    found.push(...errorViolations(task.error, `${path}.error`));
  }
  if (task.remoteStatusInput !== undefined) {
    found.push(
      ...structViolations(
        task.remoteStatusInput,
        `${path}.remote_status_input`,
        "REMOTE_STATUS_INPUT_TOO_LARGE",
        "REMOTE_STATUS_INPUT_TOO_DEEP",
      ),
    );
  }
  if (task.remoteStatusOutput !== undefined) {
    found.push(
      ...structViolations(
        task.remoteStatusOutput,
        `${path}.remote_status_output`,
        "REMOTE_STATUS_OUTPUT_TOO_LARGE",
        "REMOTE_STATUS_OUTPUT_TOO_DEEP",
      ),
    );
  }
  for (const [key, name, limit] of TASK_TEXT_LIMITS) {
    found.push(...text(task[key], limit, `${path}.${name}`));
  }
  for (const [key, name] of TASK_TIMESTAMPS) {
    found.push(...timestampViolations(task[key], `${path}.${name}`));
  }
  if (task.checkAfter !== undefined) {
    found.push(...durationViolations(task.checkAfter, `${path}.check_after`));
  }
  if (task.checkAfter !== undefined && (task.checkAfter.seconds < 0n || task.checkAfter.nanos < 0)) {
    found.push(
      new ProtocolViolation(
        "NEGATIVE_CHECK_AFTER",
        `${path}.check_after is negative`,
        `${path}.check_after`,
      ),
    );
  }
  if (task.progress !== undefined) {
    found.push(...progressViolations(task.progress, `${path}.progress`));
  }
  return found;
}

function progressViolations(progress: Progress, path: string): ProtocolViolation[] {
  const found: ProtocolViolation[] = [];
  const { fraction, done, total } = progress;
  if (fraction !== undefined && !(fraction >= 0 && fraction <= 1)) {
    found.push(
      new ProtocolViolation(
        "PROGRESS_FRACTION_OUT_OF_RANGE",
        `${path}.fraction ${fraction} is outside 0.0..1.0`,
        `${path}.fraction`,
      ),
    );
  }
  for (const [name, value] of [
    ["done", done],
    ["total", total],
  ] as const) {
    if (value !== undefined && value < 0n) {
      found.push(
        new ProtocolViolation("PROGRESS_NEGATIVE", `${path}.${name} is negative`, `${path}.${name}`),
      );
    }
  }
  if (done !== undefined && total !== undefined && total >= 0n && done > total) {
    found.push(
      new ProtocolViolation(
        "PROGRESS_DONE_EXCEEDS_TOTAL",
        `${path}.done ${done} exceeds total ${total}`,
        `${path}.done`,
      ),
    );
  }
  found.push(...text(progress.stage, LIMITS.CODE_MAX_BYTES, `${path}.stage`));
  return found;
}

/** Every rule a plugin's answer breaks (empty when the answer is valid). */
export function responseViolations(
  response: InvokeResponse,
  options: { cancelRequested?: boolean } = {},
): ProtocolViolation[] {
  const found: ProtocolViolation[] = [];
  const hasData = response.data !== undefined;
  const status = response.status;
  if (!hasData && status === undefined) {
    found.push(new ProtocolViolation("NO_DATA_OR_STATUS", "the answer sets neither data nor status"));
  }
  if (status !== undefined) {
    found.push(...taskViolations(status, "status", true));
    if (hasData && status.state !== TaskState.SUCCEEDED) {
      found.push(
        new ProtocolViolation(
          "DATA_WITH_UNFINISHED_STATE",
          `the answer sets data but its status is ${stateName(status.state)}, not SUCCEEDED`,
          "status.state",
        ),
      );
    }
    if (status.state === TaskState.CANCELLED && !options.cancelRequested) {
      found.push(
        new ProtocolViolation(
          "CANCELLED_WITHOUT_REQUEST",
          "the answer is CANCELLED but the request did not ask to cancel",
          "status.state",
        ),
      );
    }
  }
  return found;
}

/** Every rule an engine's request breaks (empty when the request is valid). */
export function requestViolations(request: InvokeRequest): ProtocolViolation[] {
  const found: ProtocolViolation[] = [];
  const number = request.context?.checkNumber ?? 0;
  if (request.isStatusCheck) {
    if (request.status?.remoteStatusInput === undefined) {
      found.push(
        new ProtocolViolation(
          "STATUS_CHECK_WITHOUT_STATUS",
          "a status check must carry status with remote_status_input",
          "status.remote_status_input",
        ),
      );
    }
    if (number < 1) {
      found.push(
        new ProtocolViolation(
          "CHECK_NUMBER_MISMATCH",
          `a status check has check_number ${number}; expected >= 1`,
          "context.check_number",
        ),
      );
    }
  } else if (number !== 0) {
    found.push(
      new ProtocolViolation(
        "CHECK_NUMBER_MISMATCH",
        `an initiating call has check_number ${number}; expected 0`,
        "context.check_number",
      ),
    );
  }
  found.push(...timestampViolations(request.context?.deadline, "context.deadline"));
  if (request.status !== undefined) {
    found.push(...taskViolations(request.status, "status"));
  }
  return found;
}

/** Throws the first ProtocolViolation the answer commits, if any. */
export function checkResponse(
  response: InvokeResponse,
  options: { cancelRequested?: boolean } = {},
): void {
  const [first] = responseViolations(response, options);
  if (first !== undefined) throw first;
}

/** Throws the first ProtocolViolation the request commits, if any. */
export function checkRequest(request: InvokeRequest): void {
  const [first] = requestViolations(request);
  if (first !== undefined) throw first;
}

/** Decodes and validates an answer's bytes; any failure is a named ProtocolViolation. */
export function decodeResponse(
  bytes: Uint8Array,
  options: { cancelRequested?: boolean } = {},
): InvokeResponse {
  let response: InvokeResponse;
  try {
    response = fromBinary(InvokeResponseSchema, bytes);
  } catch (err) {
    throw new ProtocolViolation(
      "MALFORMED_MESSAGE",
      `the answer is not a valid InvokeResponse: ${(err as Error).message}`,
    );
  }
  checkResponse(response, options);
  return response;
}

/** Decodes and validates a request's bytes; any failure is a named ProtocolViolation. */
export function decodeRequest(bytes: Uint8Array): InvokeRequest {
  let request: InvokeRequest;
  try {
    request = fromBinary(InvokeRequestSchema, bytes);
  } catch (err) {
    throw new ProtocolViolation(
      "MALFORMED_MESSAGE",
      `the request is not a valid InvokeRequest: ${(err as Error).message}`,
    );
  }
  checkRequest(request);
  return request;
}
