// The conformance scenario interpreter, field by field (conformance.proto), called directly.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { create, equals, fromBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";

import { ScenarioResultSchema } from "../gen/asyncplugin/conformance/v1/conformance_pb.js";
import { ErrorSchema } from "../gen/asyncplugin/v1/error_pb.js";
import { InvokeResponseSchema } from "../gen/asyncplugin/v1/plugin_pb.js";
import { TaskState } from "../gen/asyncplugin/v1/task_pb.js";
import {
  delayFor,
  decodeScenario,
  IMPLEMENTATION,
  interpret,
  interpretCall,
  INVALID_SCENARIO,
  NOT_ECHOED,
} from "../dist/conformance.js";
import { responseViolations } from "../dist/validate.js";
import { drive, request } from "./helpers.js";

/** The interpreter as an engine sees it, also asserting every answer is protocol-valid. */
function answerOf(brk) {
  return async (req) => {
    const res = await interpretCall(req, { break: brk });
    if (brk === undefined) {
      const rules = responseViolations(res, { cancelRequested: req.cancelRequested }).map((v) => v.rule);
      assert.deepEqual(rules, [], "the interpreter's answer breaks a rule");
    }
    return res;
  };
}
const answer = answerOf(undefined);

function resultOf(res) {
  assert.ok(res.data !== undefined, `expected data, got ${JSON.stringify(res.status?.state)}`);
  assert.equal(res.status, undefined);
  return fromBinary(ScenarioResultSchema, res.data);
}

describe("checks_before_done and result", () => {
  test("0 answers the initiating call synchronously with the ScenarioResult", async () => {
    const [res] = await drive(answer, { name: "sync", result: { answer: 42, nested: { ok: true } } });
    const result = resultOf(res);
    assert.equal(result.scenario, "sync");
    assert.deepEqual(result.result, { answer: 42, nested: { ok: true } });
    assert.equal(result.checkNumber, 0);
    assert.equal(result.taskId, "t-1");
    assert.equal(result.idempotencyKey, "idem-t-1");
    assert.equal(result.implementation, "asyncplugin-node/0.1.0");
    assert.equal(IMPLEMENTATION, "asyncplugin-node/0.1.0");
  });

  test("N answers RUNNING N times, then data on check N", async () => {
    const answers = await drive(answer, { name: "three", checksBeforeDone: 3 });
    assert.equal(answers.length, 4);
    for (const res of answers.slice(0, 3)) {
      assert.equal(res.status.state, TaskState.RUNNING);
      assert.deepEqual(res.status.remoteStatusInput, { scenario: "three" });
      assert.equal(res.status.progress, undefined);
      assert.equal(res.status.checkAfter, undefined);
    }
    const result = resultOf(answers[3]);
    assert.equal(result.checkNumber, 3);
    assert.equal(result.result, undefined, "no Scenario.result: no ScenarioResult.result");
  });

  test("absent data is the empty Scenario (answered at once)", async () => {
    const req = request({});
    req.data = undefined;
    const result = resultOf(await answer(req));
    assert.equal(result.scenario, "");
  });

  test("a payload that is not a Scenario is answered FAILED INVALID_SCENARIO", async () => {
    const res = await answer(request(new Uint8Array([0xff, 0xff, 0xff])));
    assert.equal(res.status.state, TaskState.FAILED);
    assert.equal(res.status.error.code, INVALID_SCENARIO);
    assert.ok(res.status.error.message.length > 0);
  });

  test("stateless: the same request gets the same answer, in any order", async () => {
    const scenario = { name: "again", checksBeforeDone: 2, rotateRemoteStatusInput: true };
    const first = await answer(request(scenario));
    const check1 = request(scenario, { checkNumber: 1, status: first.status });
    const a = await answer(check1);
    await answer(request(scenario, { taskId: "t-other" }));
    const b = await answer(check1);
    assert.ok(equals(InvokeResponseSchema, a, b));
  });
});

describe("rotate_remote_status_input", () => {
  test("every RUNNING answer carries {scenario, token: <task_id>:<check_number>}", async () => {
    const answers = await drive(answer, { name: "rot", checksBeforeDone: 3, rotateRemoteStatusInput: true }, { taskId: "t-9" });
    assert.deepEqual(
      answers.slice(0, 3).map((r) => r.status.remoteStatusInput),
      [0, 1, 2].map((n) => ({ scenario: "rot", token: `t-9:${n}` })),
    );
    assert.equal(resultOf(answers[3]).checkNumber, 3);
  });

  test("a status check whose echo lacks the previous token is answered FAILED", async () => {
    const scenario = { name: "rot", checksBeforeDone: 3, rotateRemoteStatusInput: true };
    const [first] = await drive(answer, scenario, { maxChecks: 0 });
    // The engine echoes a stale token on check 2 (the answer to check 1 said "t-1:1").
    const stale = { ...first.status, remoteStatusInput: { scenario: "rot", token: "t-1:0" } };
    const res = await answer(request(scenario, { checkNumber: 2, status: stale }));
    assert.equal(res.status.state, TaskState.FAILED);
    assert.equal(res.status.error.code, NOT_ECHOED);
    assert.equal(res.status.statusCode, NOT_ECHOED);
    assert.match(res.status.error.message, /t-1:0.*t-1:1/);
    // And one whose echo has no token at all.
    const bare = { ...first.status, remoteStatusInput: { scenario: "rot" } };
    const res2 = await answer(request(scenario, { checkNumber: 1, status: bare }));
    assert.equal(res2.status.error.code, NOT_ECHOED);
    assert.match(res2.status.error.message, /\(absent\)/);
  });

  test("without rotation the echo is not verified", async () => {
    const scenario = { name: "plain", checksBeforeDone: 2 };
    const [first] = await drive(answer, scenario, { maxChecks: 0 });
    const other = { ...first.status, remoteStatusInput: { whatever: 1 } };
    const res = await answer(request(scenario, { checkNumber: 1, status: other }));
    assert.equal(res.status.state, TaskState.RUNNING);
  });
});

describe("report_progress and check_after", () => {
  test("progress is check/(N+1), done=check, total=N+1, stage=check-<n>", async () => {
    const answers = await drive(answer, { name: "p", checksBeforeDone: 3, reportProgress: true });
    answers.slice(0, 3).forEach((res, n) => {
      const p = res.status.progress;
      assert.equal(p.fraction, n / 4);
      assert.equal(p.done, BigInt(n));
      assert.equal(p.total, 4n);
      assert.equal(p.stage, `check-${n}`);
    });
  });

  test("check_after is copied into every RUNNING answer", async () => {
    const answers = await drive(answer, { name: "c", checksBeforeDone: 2, checkAfter: durationFromMs(1500) });
    for (const res of answers.slice(0, 2)) {
      assert.equal(res.status.checkAfter.seconds, 1n);
      assert.equal(res.status.checkAfter.nanos, 500_000_000);
    }
  });

  test("progress stays valid when run_until_cancelled outlives checks_before_done + 1", async () => {
    const answers = await drive(answer, { name: "long", runUntilCancelled: true, reportProgress: true }, { maxChecks: 4 });
    assert.equal(answers.length, 5);
    const last = answers[4].status.progress;
    assert.equal(last.fraction, 1);
    assert.equal(last.done, 1n);
    assert.equal(last.total, 1n);
    assert.equal(last.stage, "check-4");
  });
});

describe("fail_with and fail_on_check", () => {
  const error = create(ErrorSchema, {
    message: "The audio file could not be decoded.",
    code: "UNSUPPORTED_AUDIO_FORMAT",
    rpcCode: 3,
    domain: "conformance.example",
    metadata: { k: "v" },
    wrapped: { case: "wrappedMessage", value: "cause" },
  });

  test("fails on the initiating call with exactly that envelope", async () => {
    const [res] = await drive(answer, { name: "f0", failWith: error, failOnCheck: 0, checksBeforeDone: 2 });
    assert.equal(res.status.state, TaskState.FAILED);
    assert.ok(equals(ErrorSchema, res.status.error, error));
    assert.equal(res.status.statusMessage, error.message);
    assert.equal(res.status.statusCode, error.code);
  });

  test("fails on check N after N-1 RUNNING answers", async () => {
    const answers = await drive(answer, { name: "f2", failWith: error, failOnCheck: 2, checksBeforeDone: 5, rotateRemoteStatusInput: true });
    assert.deepEqual(answers.map((r) => r.status.state), [TaskState.RUNNING, TaskState.RUNNING, TaskState.FAILED]);
    assert.ok(equals(ErrorSchema, answers[2].status.error, error));
  });

  test("a fail_on_check after the scenario is done never fires", async () => {
    const answers = await drive(answer, { name: "late", failWith: error, failOnCheck: 5, checksBeforeDone: 1 });
    assert.equal(resultOf(answers[1]).checkNumber, 1);
  });

  test("fail_on_check without fail_with does nothing", async () => {
    const [res] = await drive(answer, { name: "nofail", failOnCheck: 0 });
    resultOf(res);
  });
});

describe("run_until_cancelled and cancel", () => {
  test("RUNNING until cancel_requested, then CANCELLED", async () => {
    const answers = await drive(answer, { name: "rc", runUntilCancelled: true, rotateRemoteStatusInput: true }, { cancelAt: 4, maxChecks: 10 });
    assert.deepEqual(answers.map((r) => r.status.state), [
      TaskState.RUNNING, TaskState.RUNNING, TaskState.RUNNING, TaskState.RUNNING, TaskState.CANCELLED,
    ]);
    assert.equal(answers[4].data, undefined);
  });

  test("run_until_cancelled ignores checks_before_done", async () => {
    const answers = await drive(answer, { name: "rc", runUntilCancelled: true, checksBeforeDone: 1 }, { maxChecks: 3 });
    assert.ok(answers.every((r) => r.status.state === TaskState.RUNNING));
  });

  test("any scenario honours a cancel request", async () => {
    const answers = await drive(answer, { name: "c", checksBeforeDone: 3 }, { cancelAt: 1 });
    assert.equal(answers[1].status.state, TaskState.CANCELLED);
  });

  test("cancel comes before failure", async () => {
    const failWith = create(ErrorSchema, { message: "boom" });
    const answers = await drive(answer, { name: "c", checksBeforeDone: 3, failWith, failOnCheck: 1 }, { cancelAt: 1 });
    assert.equal(answers[1].status.state, TaskState.CANCELLED);
  });
});

describe("delay and delay_on_check", () => {
  test("delayFor is the delay on delay_on_check only", () => {
    const scenario = decodeScenario(request({ delay: durationFromMs(250), delayOnCheck: 2 }));
    assert.equal(delayFor(scenario, request({}, { checkNumber: 2 })), 250);
    assert.equal(delayFor(scenario, request({}, { checkNumber: 1 })), 0);
    assert.equal(delayFor(decodeScenario(request({ delayOnCheck: 2 })), request({}, { checkNumber: 2 })), 0);
  });

  test("the interpreter waits before answering that call, and only that call", async () => {
    const waited = [];
    const sleep = async (ms) => void waited.push(ms);
    const scenario = { name: "slow", checksBeforeDone: 2, delay: durationFromMs(5000), delayOnCheck: 1 };
    const answers = await drive((req) => interpretCall(req, { sleep }), scenario);
    assert.deepEqual(waited, [5000]);
    assert.equal(resultOf(answers[2]).checkNumber, 2);
  });

  test("a delay on the initiating call (delay_on_check 0)", async () => {
    const start = Date.now();
    const [res] = await drive(answer, { name: "slow0", delay: durationFromMs(120) });
    assert.ok(Date.now() - start >= 100);
    resultOf(res);
  });

  test("the delay ends early when the caller gives up", async () => {
    const controller = new AbortController();
    const start = Date.now();
    setTimeout(() => controller.abort(), 50);
    await interpretCall(request({ delay: durationFromMs(10_000) }), { signal: controller.signal });
    assert.ok(Date.now() - start < 2000);
  });
});

describe("is_status_check", () => {
  test("a call that is not a status check is new work (check 0), whatever its status", async () => {
    const scenario = { name: "rot", checksBeforeDone: 1, rotateRemoteStatusInput: true };
    const req = request(scenario);
    req.status = (await answer(request(scenario))).status;
    const res = interpret(decodeScenario(req), req);
    assert.deepEqual(res.status.remoteStatusInput, { scenario: "rot", token: "t-1:0" });
  });
});

describe("--break", () => {
  test("running-without-remote-status-input omits remote_status_input", async () => {
    const res = await interpretCall(request({ name: "b", checksBeforeDone: 1 }), { break: "running-without-remote-status-input" });
    assert.equal(res.status.state, TaskState.RUNNING);
    assert.equal(res.status.remoteStatusInput, undefined);
    assert.deepEqual(responseViolations(res).map((v) => v.rule), ["RUNNING_WITHOUT_REMOTE_STATUS_INPUT"]);
  });

  test("no-echo: tokens do not follow <task_id>:<check_number> and are not verified", async () => {
    const answers = await drive(answerOf("no-echo"), { name: "b", checksBeforeDone: 3, rotateRemoteStatusInput: true });
    assert.deepEqual(
      answers.slice(0, 3).map((r) => r.status.remoteStatusInput.token),
      ["t-1:0", "t-1:0", "t-1:0"],
    );
    assert.ok(answers[3].data !== undefined, "no verification: the scenario still finishes");
  });

  test("failed-without-error drops the error envelope", async () => {
    const failWith = create(ErrorSchema, { message: "boom", code: "BOOM" });
    const res = await interpretCall(request({ failWith }), { break: "failed-without-error" });
    assert.equal(res.status.state, TaskState.FAILED);
    assert.deepEqual(responseViolations(res).map((v) => v.rule), ["FAILED_WITHOUT_ERROR"]);
  });

  test("ignore-status-check never gets past check 0", async () => {
    const answers = await drive(answerOf("ignore-status-check"), { name: "b", checksBeforeDone: 2, rotateRemoteStatusInput: true }, { maxChecks: 4 });
    assert.equal(answers.length, 5);
    assert.ok(answers.every((r) => r.status.remoteStatusInput.token === "t-1:0"));
  });
});
