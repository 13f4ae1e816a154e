// The validation module: every rule by name, on answers and on requests (plugin.proto, task.proto).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import { create, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";

import { ErrorSchema } from "../gen/asyncplugin/v1/error_pb.js";
import {
  InvokeRequestSchema,
  InvokeResponseSchema,
  RequestContextSchema,
} from "../gen/asyncplugin/v1/plugin_pb.js";
import { ProgressSchema, TaskSchema, TaskState } from "../gen/asyncplugin/v1/task_pb.js";
import {
  checkResponse,
  decodeRequest,
  decodeResponse,
  errorViolations,
  LIMITS,
  ProtocolViolation,
  requestViolations,
  responseViolations,
  RULES,
  structByteSize,
  structDepth,
} from "../dist/validate.js";
import { repoPath } from "./helpers.js";

const task = (init) => create(TaskSchema, init);
const running = (init = {}) => task({ state: TaskState.RUNNING, remoteStatusInput: {}, ...init });
const answer = (init) => create(InvokeResponseSchema, init);
const rules = (res, opts) => responseViolations(res, opts).map((v) => v.rule);
const taskRules = (t, opts) => rules(answer({ status: t }), opts);

/** A JSON object nested `levels` deep: {a: {a: ... {}}} (levels 1 = {}). */
function nested(levels) {
  let value = {};
  for (let i = 1; i < levels; i++) value = { a: value };
  return value;
}

/**
 * The rule names listed in plugin.proto's "Protocol rules" comment (`//   - NAME: ...`, several
 * names to an item where they share one), sorted.
 */
function protoRules() {
  const text = readFileSync(repoPath("proto", "asyncplugin", "v1", "plugin.proto"), "utf8");
  const section = text.split("// Protocol rules.")[1].split("// A side that receives")[0];
  const joined = section
    .split("\n")
    .map((line) => line.replace(/^\/\//, "").trim())
    .join(" ");
  const heads = joined.split(" - ").slice(1).map((item) => item.split(":")[0]);
  const names = new Set(heads.flatMap((head) => head.match(/\b[A-Z][A-Z_]+[A-Z]\b/g) ?? []));
  return [...names].sort();
}

function errorChain(depth) {
  let error = create(ErrorSchema, { message: `level ${depth}` });
  for (let i = depth - 1; i >= 1; i--) {
    error = create(ErrorSchema, { message: `level ${i}`, wrapped: { case: "wrappedError", value: error } });
  }
  return error;
}

describe("valid answers", () => {
  test("data alone, data with SUCCEEDED, empty data, RUNNING with {}, FAILED with error", () => {
    assert.deepEqual(rules(answer({ data: new Uint8Array([1]) })), []);
    assert.deepEqual(rules(answer({ data: new Uint8Array(0) })), [], "empty data is still data");
    assert.deepEqual(rules(answer({ data: new Uint8Array(0), status: task({ state: TaskState.SUCCEEDED }) })), []);
    assert.deepEqual(rules(answer({ status: task({ state: TaskState.SUCCEEDED }) })), []);
    assert.deepEqual(rules(answer({ status: running() })), []);
    assert.deepEqual(
      rules(answer({ status: task({ state: TaskState.FAILED, error: create(ErrorSchema, { message: "x" }) }) })),
      [],
    );
    assert.deepEqual(rules(answer({ status: task({ state: TaskState.CANCELLED }) }), { cancelRequested: true }), []);
  });
});

describe("answer rules", () => {
  test("NO_DATA_OR_STATUS", () => {
    assert.deepEqual(rules(answer({})), ["NO_DATA_OR_STATUS"]);
  });
  test("STATE_UNSPECIFIED", () => {
    assert.deepEqual(taskRules(task({ statusMessage: "forgot" })), ["STATE_UNSPECIFIED"]);
  });
  test("STATE_UNKNOWN", () => {
    assert.deepEqual(taskRules(task({ state: 99 })), ["STATE_UNKNOWN"]);
  });
  test("STATE_NOT_ALLOWED_IN_ANSWER (WAITING), allowed in a request's record", () => {
    assert.deepEqual(taskRules(task({ state: TaskState.WAITING })), ["STATE_NOT_ALLOWED_IN_ANSWER"]);
    const req = create(InvokeRequestSchema, { status: task({ state: TaskState.WAITING }) });
    assert.deepEqual(requestViolations(req).map((v) => v.rule), []);
  });
  test("DATA_WITH_UNFINISHED_STATE", () => {
    assert.deepEqual(rules(answer({ data: new Uint8Array([10, 0]), status: running() })), ["DATA_WITH_UNFINISHED_STATE"]);
  });
  test("RUNNING_WITHOUT_REMOTE_STATUS_INPUT", () => {
    assert.deepEqual(taskRules(task({ state: TaskState.RUNNING })), ["RUNNING_WITHOUT_REMOTE_STATUS_INPUT"]);
  });
  test("FAILED_WITHOUT_ERROR", () => {
    assert.deepEqual(taskRules(task({ state: TaskState.FAILED })), ["FAILED_WITHOUT_ERROR"]);
  });
  test("ERROR_WITHOUT_FAILED", () => {
    assert.deepEqual(taskRules(running({ error: create(ErrorSchema, { message: "x" }) })), ["ERROR_WITHOUT_FAILED"]);
  });
  test("ERROR_WITHOUT_MESSAGE, also in a wrapped error", () => {
    assert.deepEqual(taskRules(task({ state: TaskState.FAILED, error: create(ErrorSchema, {}) })), ["ERROR_WITHOUT_MESSAGE"]);
    const wrapped = create(ErrorSchema, { message: "outer", wrapped: { case: "wrappedError", value: create(ErrorSchema, {}) } });
    const found = errorViolations(wrapped);
    assert.deepEqual(found.map((v) => v.rule), ["ERROR_WITHOUT_MESSAGE"]);
    assert.equal(found[0].field, "error.wrapped_error.message");
  });
  test("ERROR_TOO_DEEP: 8 nested Errors are fine, 9 are not", () => {
    assert.deepEqual(errorViolations(errorChain(LIMITS.ERROR_MAX_DEPTH)), []);
    assert.deepEqual(errorViolations(errorChain(LIMITS.ERROR_MAX_DEPTH + 1)).map((v) => v.rule), ["ERROR_TOO_DEEP"]);
  });
  test("ERROR_METADATA_TOO_LARGE: 64 entries and 16,384 bytes of keys and values pass, more do not", () => {
    assert.equal(LIMITS.ERROR_METADATA_MAX_ENTRIES, 64);
    assert.equal(LIMITS.ERROR_METADATA_MAX_BYTES, 16_384);
    /** `count` entries of exactly `entryBytes` UTF-8 bytes each ("k000" + the value). */
    const entries = (count, entryBytes) =>
      Object.fromEntries(Array.from({ length: count }, (_, i) => [`k${String(i).padStart(3, "0")}`, "v".repeat(entryBytes - 4)]));
    const failed = (metadata) => errorViolations(create(ErrorSchema, { message: "m", metadata }));
    assert.deepEqual(failed(entries(64, 256)), []);
    const tooMany = failed(entries(65, 8));
    assert.deepEqual(tooMany.map((v) => [v.rule, v.field]), [["ERROR_METADATA_TOO_LARGE", "error.metadata"]]);
    assert.match(tooMany[0].message, /has 65 entries; limit 64$/);
    const tooBig = failed({ ...entries(63, 256), k063: "v".repeat(253) });
    assert.match(tooBig[0].message, /has 16385 bytes of keys and values; limit 16384$/);
    // UTF-8 bytes, not characters: 2 + 2 x 8,192 bytes.
    assert.match(failed({ é: "é".repeat(8192) })[0].message, /has 16386 bytes/);
    // In a wrapped Error too.
    const inner = create(ErrorSchema, { message: "inner", metadata: entries(65, 8) });
    const outer = create(ErrorSchema, { message: "outer", wrapped: { case: "wrappedError", value: inner } });
    assert.deepEqual(errorViolations(outer).map((v) => v.field), ["error.wrapped_error.metadata"]);
  });
  test("CANCELLED_WITHOUT_REQUEST", () => {
    assert.deepEqual(taskRules(task({ state: TaskState.CANCELLED })), ["CANCELLED_WITHOUT_REQUEST"]);
  });
  test("REMOTE_STATUS_INPUT_TOO_LARGE / _TOO_DEEP", () => {
    const big = { blob: "x".repeat(LIMITS.REMOTE_STATUS_MAX_BYTES) };
    assert.ok(structByteSize(big) > LIMITS.REMOTE_STATUS_MAX_BYTES);
    assert.deepEqual(taskRules(running({ remoteStatusInput: big })), ["REMOTE_STATUS_INPUT_TOO_LARGE"]);
    assert.deepEqual(taskRules(running({ remoteStatusInput: nested(32) })), []);
    assert.deepEqual(taskRules(running({ remoteStatusInput: nested(33) })), ["REMOTE_STATUS_INPUT_TOO_DEEP"]);
  });
  test("REMOTE_STATUS_OUTPUT_TOO_LARGE / _TOO_DEEP", () => {
    const big = { blob: "x".repeat(LIMITS.REMOTE_STATUS_MAX_BYTES) };
    assert.deepEqual(taskRules(running({ remoteStatusOutput: big })), ["REMOTE_STATUS_OUTPUT_TOO_LARGE"]);
    assert.deepEqual(taskRules(running({ remoteStatusOutput: nested(33) })), ["REMOTE_STATUS_OUTPUT_TOO_DEEP"]);
  });
  test("FIELD_TOO_LONG counts UTF-8 bytes", () => {
    assert.deepEqual(taskRules(running({ statusCode: "x".repeat(128) })), []);
    assert.deepEqual(taskRules(running({ statusCode: "x".repeat(129) })), ["FIELD_TOO_LONG"]);
    // 1,366 three-byte characters: 4,098 bytes, though only 1,366 UTF-16 units.
    assert.deepEqual(taskRules(running({ statusMessage: "€".repeat(1366) })), ["FIELD_TOO_LONG"]);
    const error = create(ErrorSchema, { message: "m", wrapped: { case: "wrappedMessage", value: "x".repeat(16_385) } });
    assert.deepEqual(errorViolations(error).map((v) => v.field), ["error.wrapped_message"]);
    assert.deepEqual(taskRules(running({ progress: create(ProgressSchema, { stage: "s".repeat(129) }) })), ["FIELD_TOO_LONG"]);
  });
  test("NEGATIVE_CHECK_AFTER", () => {
    assert.deepEqual(taskRules(running({ checkAfter: durationFromMs(0) })), []);
    assert.deepEqual(taskRules(running({ checkAfter: durationFromMs(-1) })), ["NEGATIVE_CHECK_AFTER"]);
  });
  test("PROGRESS_FRACTION_OUT_OF_RANGE, PROGRESS_NEGATIVE, PROGRESS_DONE_EXCEEDS_TOTAL", () => {
    const progress = (init) => running({ progress: create(ProgressSchema, init) });
    assert.deepEqual(taskRules(progress({ fraction: 0, done: 0n, total: 0n })), []);
    assert.deepEqual(taskRules(progress({ fraction: 1 })), []);
    assert.deepEqual(taskRules(progress({ fraction: 1.01 })), ["PROGRESS_FRACTION_OUT_OF_RANGE"]);
    assert.deepEqual(taskRules(progress({ fraction: Number.NaN })), ["PROGRESS_FRACTION_OUT_OF_RANGE"]);
    assert.deepEqual(taskRules(progress({ done: -1n })), ["PROGRESS_NEGATIVE"]);
    assert.deepEqual(taskRules(progress({ total: -1n })), ["PROGRESS_NEGATIVE"]);
    assert.deepEqual(taskRules(progress({ done: 5n, total: 4n })), ["PROGRESS_DONE_EXCEEDS_TOTAL"]);
  });
  test("checkResponse throws the first violation", () => {
    assert.throws(
      () => checkResponse(answer({})),
      (err) => err instanceof ProtocolViolation && err.rule === "NO_DATA_OR_STATUS" && err.message.startsWith("NO_DATA_OR_STATUS: "),
    );
  });
  test("MALFORMED_MESSAGE", () => {
    assert.throws(() => decodeResponse(new Uint8Array([0x0a, 0x05, 0x01])), (err) => err.rule === "MALFORMED_MESSAGE");
    assert.throws(() => decodeRequest(new Uint8Array([0xff])), (err) => err.rule === "MALFORMED_MESSAGE");
  });
  test("RULES is exactly the rule list of plugin.proto, both ways", () => {
    // Every rule the module reports is typed `Rule` (a key of RULES), so tsc already refuses a
    // name missing from RULES; this pins RULES itself to the spec (the Python test
    // tests/protocol/test_validate.py pins the Python RULES to the same list).
    const documented = protoRules();
    assert.ok(documented.length > 20, `parsed only ${documented.length} rules from plugin.proto`);
    assert.deepEqual(Object.keys(RULES).sort(), documented);
    for (const [name, statement] of Object.entries(RULES)) {
      assert.ok(statement.length > 10, `${name} has no statement`);
    }
  });
});

describe("request rules (engine side)", () => {
  const ctx = (checkNumber) => create(RequestContextSchema, { taskId: "t", checkNumber });
  const req = (init) => create(InvokeRequestSchema, init);
  const reqRules = (r) => requestViolations(r).map((v) => v.rule);

  test("a valid initiation and a valid status check", () => {
    assert.deepEqual(reqRules(req({ data: new Uint8Array(0), context: ctx(0) })), []);
    assert.deepEqual(reqRules(req({ context: ctx(1), isStatusCheck: true, status: running() })), []);
  });
  test("STATUS_CHECK_WITHOUT_STATUS", () => {
    assert.deepEqual(reqRules(req({ context: ctx(1), isStatusCheck: true })), ["STATUS_CHECK_WITHOUT_STATUS"]);
    assert.deepEqual(
      reqRules(req({ context: ctx(1), isStatusCheck: true, status: task({ state: TaskState.RUNNING }) })),
      ["STATUS_CHECK_WITHOUT_STATUS", "RUNNING_WITHOUT_REMOTE_STATUS_INPUT"],
    );
  });
  test("CHECK_NUMBER_MISMATCH", () => {
    assert.deepEqual(reqRules(req({ context: ctx(2) })), ["CHECK_NUMBER_MISMATCH"]);
    assert.deepEqual(reqRules(req({ context: ctx(0), isStatusCheck: true, status: running() })), ["CHECK_NUMBER_MISMATCH"]);
  });
  test("decodeRequest round trip", () => {
    const r = req({ data: new Uint8Array([1, 2]), context: ctx(0) });
    assert.deepEqual(decodeRequest(toBinary(InvokeRequestSchema, r)).data, new Uint8Array([1, 2]));
  });
});

describe("structDepth (as python/asyncplugin/protocol/structs.py)", () => {
  test("flat and empty objects have depth 1; each Struct or list level adds 1", () => {
    assert.equal(structDepth({}), 1);
    assert.equal(structDepth({ a: 1, b: "x", c: null }), 1);
    assert.equal(structDepth({ a: { b: 1 } }), 2);
    assert.equal(structDepth({ a: [1] }), 2);
    assert.equal(structDepth({ a: [[1], { b: [] }] }), 4);
  });
});

describe("well-known type ranges (MALFORMED_MESSAGE, as validate.py)", () => {
  test("a Timestamp past year 9999 in an answer is malformed, naming the field", () => {
    const answer = create(InvokeResponseSchema, {
      status: running({ createTime: { seconds: 2n ** 62n, nanos: 0 } }),
    });
    const found = responseViolations(answer).map((v) => [v.rule, v.field]);
    assert.deepEqual(found, [["MALFORMED_MESSAGE", "status.create_time"]]);
  });

  test("a Duration past 10,000 years, or with mixed signs, is malformed", () => {
    for (const checkAfter of [
      { seconds: 2n ** 62n, nanos: 0 },
      { seconds: 5n, nanos: -1 },
    ]) {
      const answer = create(InvokeResponseSchema, { status: running({ checkAfter }) });
      const rules = responseViolations(answer).map((v) => v.rule);
      assert.ok(rules.includes("MALFORMED_MESSAGE"), JSON.stringify(rules));
    }
  });

  test("a request deadline outside the Timestamp range is malformed", () => {
    const request = create(InvokeRequestSchema, {
      context: create(RequestContextSchema, { deadline: { seconds: -(2n ** 40n), nanos: 0 } }),
    });
    const found = requestViolations(request).map((v) => [v.rule, v.field]);
    assert.deepEqual(found, [["MALFORMED_MESSAGE", "context.deadline"]]);
  });

  test("timestamps and durations inside the range pass", () => {
    const answer = create(InvokeResponseSchema, {
      status: running({
        createTime: { seconds: 1_767_225_600n, nanos: 5 },
        checkAfter: durationFromMs(1500),
      }),
    });
    assert.deepEqual(responseViolations(answer), []);
  });
});
