// Shared test helpers.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root: the nearest folder above this file that holds testdata/ and proto/. */
export const REPO_ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "testdata")) && existsSync(join(dir, "proto"))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error("cannot find the repository root (testdata/ and proto/)");
    dir = parent;
  }
})();

export function repoPath(...parts) {
  return join(REPO_ROOT, ...parts);
}

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";

import { ScenarioSchema } from "../gen/asyncplugin/conformance/v1/conformance_pb.js";
import {
  InvokeRequestSchema,
  RequestContextSchema,
} from "../gen/asyncplugin/v1/plugin_pb.js";
import { TaskState } from "../gen/asyncplugin/v1/task_pb.js";

/** An InvokeRequest for call `checkNumber` of a task, the payload being `scenario` (init or bytes). */
export function request(scenario, { checkNumber = 0, status, cancel = false, taskId = "t-1" } = {}) {
  const data =
    scenario instanceof Uint8Array ? scenario : toBinary(ScenarioSchema, create(ScenarioSchema, scenario));
  return create(InvokeRequestSchema, {
    data,
    context: create(RequestContextSchema, {
      taskId,
      idempotencyKey: `idem-${taskId}`,
      checkNumber,
      engine: "node-test",
    }),
    status,
    isStatusCheck: checkNumber > 0,
    cancelRequested: cancel,
  });
}

/**
 * Plays the engine: initiates, then echoes the last RUNNING Task on each status check, until the
 * answer is not RUNNING or `maxChecks` checks were sent. `answer(req)` may be sync or async.
 * Returns every answer.
 */
export async function drive(answer, scenario, { maxChecks = 10, taskId = "t-1", cancelAt } = {}) {
  const answers = [];
  let status;
  for (let n = 0; n <= maxChecks; n++) {
    const req = request(scenario, { checkNumber: n, status, taskId, cancel: n === cancelAt });
    const res = await answer(req);
    answers.push(res);
    if (res.status?.state !== TaskState.RUNNING) break;
    status = res.status;
  }
  return answers;
}

export { fromBinary };
