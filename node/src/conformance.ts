// The conformance scenario interpreter (proto/asyncplugin/conformance/v1/conformance.proto).
//
// The payload (InvokeRequest.data) is a Scenario; the result (InvokeResponse.data) is a
// ScenarioResult. Stateless: everything it needs on a status check comes from the request (the
// Scenario in `data`, the echoed `remote_status_input`, `context.check_number`). On every call it
// applies, in the contract's order: delay, cancel, failure, progress, then done-or-running. The
// failure step first answers `fail_with` on `fail_on_check`, then verifies the echoed token of a
// rotating scenario (the same order as the Python reference interpreter).

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";

import {
  ScenarioResultSchema,
  ScenarioSchema,
  type Scenario,
} from "../gen/asyncplugin/conformance/v1/conformance_pb.js";
import type { Error as ErrorEnvelope } from "../gen/asyncplugin/v1/error_pb.js";
import { ErrorSchema } from "../gen/asyncplugin/v1/error_pb.js";
import {
  InvokeResponseSchema,
  type InvokeRequest,
  type InvokeResponse,
} from "../gen/asyncplugin/v1/plugin_pb.js";
import { ProgressSchema, TaskSchema, TaskState } from "../gen/asyncplugin/v1/task_pb.js";
import type { Break } from "./breaks.js";

/** The `implementation` this interpreter writes into every ScenarioResult. */
export const IMPLEMENTATION = "asyncplugin-node/0.1.0";

/** The error code of a status check whose echoed remote_status_input lost the token. */
export const NOT_ECHOED = "REMOTE_STATUS_INPUT_NOT_ECHOED";

/** The error code of a payload that does not decode as a Scenario. */
export const INVALID_SCENARIO = "INVALID_SCENARIO";

/** The remote_status_input token a rotating scenario sends in its answer to a check. */
export function expectedToken(taskId: string, checkNumber: number): string {
  return `${taskId}:${checkNumber}`;
}

export interface InterpretOptions {
  /** Deliberately break one protocol rule (for the kit's negative tests); see breaks.ts. */
  break?: Break;
  /** How to wait `ms` milliseconds (tests replace it); resolves early when `signal` aborts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Aborted when the caller gave up on the call (its deadline passed, or it cancelled). */
  signal?: AbortSignal;
}

/** Waits `ms` milliseconds without blocking other calls; stops early if `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (ms <= 0 || signal?.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Decodes the Scenario payload; absent data is the empty Scenario (all fields default). */
export function decodeScenario(request: InvokeRequest): Scenario {
  return fromBinary(ScenarioSchema, request.data ?? new Uint8Array(0));
}

/** Milliseconds to wait before answering this call (0 when the scenario sets no delay for it). */
export function delayFor(scenario: Scenario, request: InvokeRequest): number {
  const number = request.context?.checkNumber ?? 0;
  // A transport retry of the delayed check (status.retries > 0) is answered without delay.
  const retried = (request.status?.retries ?? 0) > 0;
  if (scenario.delay !== undefined && number === scenario.delayOnCheck && !retried) {
    return Math.max(0, durationMs(scenario.delay));
  }
  return 0;
}

/** Answers one call of a conformance scenario. */
export async function interpretCall(
  request: InvokeRequest,
  options: InterpretOptions = {},
): Promise<InvokeResponse> {
  let scenario: Scenario;
  try {
    scenario = decodeScenario(request);
  } catch (err) {
    return failed(
      INVALID_SCENARIO,
      `the payload is not an asyncplugin.conformance.v1.Scenario: ${(err as Error).message}`,
    );
  }
  const delay = delayFor(scenario, request);
  if (delay > 0) await (options.sleep ?? sleep)(delay, options.signal);
  return interpret(scenario, request, options.break);
}

/** The answer to one call of `scenario`, without the delay step (see `delayFor`). */
export function interpret(
  scenario: Scenario,
  request: InvokeRequest,
  brk?: Break,
): InvokeResponse {
  // A plugin must read is_status_check: a call that is not a status check is new work, check 0.
  const isStatusCheck = request.isStatusCheck && brk !== "ignore-status-check";
  const number = isStatusCheck ? (request.context?.checkNumber ?? 0) : 0;
  const taskId = request.context?.taskId ?? "";

  // cancel
  if (request.cancelRequested) {
    return create(InvokeResponseSchema, {
      status: create(TaskSchema, { state: TaskState.CANCELLED, statusMessage: "cancelled" }),
    });
  }

  // failure: the scenario's own error envelope, then the echo verification of a rotating scenario
  if (scenario.failWith !== undefined && number === scenario.failOnCheck) {
    return failedWith(scenario.failWith, brk);
  }
  if (scenario.rotateRemoteStatusInput && isStatusCheck && brk !== "no-echo") {
    const echoed = request.status?.remoteStatusInput?.["token"];
    const want = expectedToken(taskId, number - 1);
    if (echoed !== want) {
      const got = typeof echoed === "string" ? JSON.stringify(echoed) : "(absent)";
      return failed(NOT_ECHOED, `check ${number} echoed token ${got}; expected "${want}"`);
    }
  }

  // done
  if (!scenario.runUntilCancelled && number >= scenario.checksBeforeDone) {
    const result = create(ScenarioResultSchema, {
      scenario: scenario.name,
      result: scenario.result,
      checkNumber: number,
      taskId,
      idempotencyKey: request.context?.idempotencyKey ?? "",
      implementation: IMPLEMENTATION,
    });
    return create(InvokeResponseSchema, { data: toBinary(ScenarioResultSchema, result) });
  }

  // progress + running
  const task = create(TaskSchema, { state: TaskState.RUNNING, statusMessage: `check ${number}` });
  if (brk !== "running-without-remote-status-input") {
    task.remoteStatusInput = { scenario: scenario.name };
    if (scenario.rotateRemoteStatusInput) {
      // --break no-echo: the token never rotates (it stays at the initiating call's), so the
      // answers to checks 1, 2, ... do not carry "<task_id>:<check_number>".
      const tokenCheck = brk === "no-echo" ? 0 : number;
      task.remoteStatusInput["token"] = expectedToken(taskId, tokenCheck);
    }
  }
  if (scenario.reportProgress) {
    const total = scenario.checksBeforeDone + 1;
    // Contract (conformance.proto): total = checks_before_done + 1, done = min(n, total),
    // fraction = done / total; the clamp keeps run_until_cancelled answers within the rules.
    const done = Math.min(number, total);
    task.progress = create(ProgressSchema, {
      fraction: done / total,
      done: BigInt(done),
      total: BigInt(total),
      stage: `check-${number}`,
    });
  }
  if (scenario.checkAfter !== undefined) task.checkAfter = scenario.checkAfter;
  return create(InvokeResponseSchema, { status: task });
}

function failedWith(error: ErrorEnvelope, brk?: Break): InvokeResponse {
  const task = create(TaskSchema, {
    state: TaskState.FAILED,
    statusMessage: error.message,
    statusCode: error.code,
  });
  if (brk !== "failed-without-error") task.error = error;
  return create(InvokeResponseSchema, { status: task });
}

function failed(code: string, message: string): InvokeResponse {
  return failedWith(create(ErrorSchema, { message, code }));
}
