// A realistic asynchronous plugin: speech-to-text through a slow third-party API.
//
// The payload is asyncplugin.examples.v1.TranscribeInput and the result a Transcript
// (proto/asyncplugin/examples/v1/transcriber.proto). The plugin itself is stateless: on the
// initiating call it submits a job to the remote API (passing the engine's idempotency key) and
// answers RUNNING with the remote job id in `remote_status_input`, a `check_after` hint from the
// API's estimate, and progress; on each status check it reads the job id back from the echoed
// `remote_status_input` and asks the API how the job stands. It is served both as
// asyncplugin.v1.PluginService/Invoke (generic envelope, TranscribeInput bytes in `data`) and as
// asyncplugin.examples.v1.TranscriberService/Transcribe (the typed RPC: the same bytes on the wire).
//
// The "third-party API" is simulated in process (SpeechApi): jobs queue briefly, then progress
// with wall-clock time, and fail for audio formats it does not support (anything but .wav, .mp3
// and .flac), so an engine can drive the plugin to SUCCEEDED and to FAILED.

import { create, fromBinary, toBinary, type JsonObject } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";

import {
  TranscribeInputSchema,
  TranscriberService,
  TranscriptSchema,
  type TranscribeInput,
} from "../gen/asyncplugin/examples/v1/transcriber_pb.js";
import { ErrorSchema, type Error as ErrorEnvelope } from "../gen/asyncplugin/v1/error_pb.js";
import {
  InvokeResponseSchema,
  type InvokeRequest,
  type InvokeResponse,
} from "../gen/asyncplugin/v1/plugin_pb.js";
import { ProgressSchema, TaskSchema, TaskState } from "../gen/asyncplugin/v1/task_pb.js";
import { INVOKE_PATH, methodPath } from "./plugin.js";

/** The gRPC paths the example serves. */
export const EXAMPLE_PATHS = [INVOKE_PATH, methodPath(TranscriberService.method.transcribe)];

/** The error domain of the example's error codes. */
export const DOMAIN = "transcriber.example.com";

const SUPPORTED_FORMATS = new Set(["wav", "mp3", "flac"]);
const QUEUE_FRACTION = 0.2;
const FINISHED_JOB_TTL_MS = 10 * 60 * 1000;

/** A job of the simulated remote API, as its status endpoint reports it. */
export interface RemoteJobStatus {
  id: string;
  state: "QUEUED" | "PROCESSING" | "DONE" | "FAILED" | "CANCELLED";
  /** 0..1 */
  progress: number;
  /** The API's estimate of the time left, in milliseconds. */
  etaMs: number;
  text?: string;
  /** The API's raw error, for FAILED jobs. */
  error?: string;
}

interface RemoteJob {
  id: string;
  audioUrl: string;
  language: string;
  createdMs: number;
  durationMs: number;
  cancelledMs?: number;
  format: string;
}

/** The simulated third-party speech-to-text API: submit, poll, cancel. */
export class SpeechApi {
  private readonly jobs = new Map<string, RemoteJob>();
  private readonly byIdempotencyKey = new Map<string, string>();
  private nextId = 1;

  constructor(
    /** How long a job takes from submission to result. */
    readonly jobMs = 1500,
    private readonly now: () => number = Date.now,
  ) {}

  /** Starts a job, or returns the job already started with the same idempotency key. */
  submit(audioUrl: string, language: string, idempotencyKey: string): RemoteJobStatus {
    this.sweep();
    const existing = idempotencyKey ? this.byIdempotencyKey.get(idempotencyKey) : undefined;
    if (existing !== undefined && this.jobs.has(existing)) return this.status(existing)!;
    const id = `j-${this.nextId++}`;
    const path = new URL(audioUrl).pathname;
    const format = path.includes(".") ? path.slice(path.lastIndexOf(".") + 1).toLowerCase() : "";
    this.jobs.set(id, {
      id,
      audioUrl,
      language,
      createdMs: this.now(),
      durationMs: this.jobMs,
      format,
    });
    if (idempotencyKey) this.byIdempotencyKey.set(idempotencyKey, id);
    return this.status(id)!;
  }

  /** How the job stands, or undefined if the API does not know it. */
  status(id: string): RemoteJobStatus | undefined {
    const job = this.jobs.get(id);
    if (job === undefined) return undefined;
    const elapsed = (job.cancelledMs ?? this.now()) - job.createdMs;
    const progress = Math.min(1, elapsed / job.durationMs);
    const etaMs = Math.max(0, job.durationMs - elapsed);
    if (job.cancelledMs !== undefined) return { id, state: "CANCELLED", progress, etaMs: 0 };
    if (!SUPPORTED_FORMATS.has(job.format) && progress >= 0.5) {
      return {
        id,
        state: "FAILED",
        progress,
        etaMs: 0,
        error: `HTTP 422 Unprocessable Entity: cannot decode "${job.format || "unknown"}" audio`,
      };
    }
    if (progress >= 1) {
      const name = decodeURIComponent(job.audioUrl.split("/").pop() || "audio");
      return {
        id,
        state: "DONE",
        progress: 1,
        etaMs: 0,
        text: `This is the transcript of ${name} (${job.language || "language detected"}).`,
      };
    }
    return { id, state: progress < QUEUE_FRACTION ? "QUEUED" : "PROCESSING", progress, etaMs };
  }

  /** Stops a job; false if the API does not know it. */
  cancel(id: string): boolean {
    const job = this.jobs.get(id);
    if (job === undefined) return false;
    job.cancelledMs ??= this.now();
    return true;
  }

  private sweep(): void {
    const now = this.now();
    for (const [id, job] of this.jobs) {
      if (now - job.createdMs > job.durationMs + FINISHED_JOB_TTL_MS) {
        this.jobs.delete(id);
      }
    }
    for (const [key, id] of this.byIdempotencyKey) {
      if (!this.jobs.has(id)) this.byIdempotencyKey.delete(key);
    }
  }
}

function failed(error: Omit<Partial<ErrorEnvelope>, "$typeName">): InvokeResponse {
  const envelope = create(ErrorSchema, { domain: DOMAIN, ...error });
  return create(InvokeResponseSchema, {
    status: create(TaskSchema, {
      state: TaskState.FAILED,
      statusMessage: envelope.message,
      statusSuggestion: envelope.suggestion,
      statusCode: envelope.code,
      error: envelope,
    }),
  });
}

function running(job: RemoteJobStatus): InvokeResponse {
  const percent = Math.floor(job.progress * 100);
  const stage = job.state === "QUEUED" ? "queued" : "transcribing";
  // Check again when the API expects the job to be done, but at least every 5 s: a hint the
  // engine clamps to its own polling bounds.
  const hintMs = Math.min(Math.max(job.etaMs, 100), 5000);
  const remoteStatusOutput: JsonObject = {
    job_id: job.id,
    state: job.state,
    progress: job.progress,
    eta_ms: job.etaMs,
  };
  return create(InvokeResponseSchema, {
    status: create(TaskSchema, {
      state: TaskState.RUNNING,
      statusMessage: `Transcribing: ${percent}% done`,
      remoteStatusInput: { remote_job_id: job.id },
      remoteStatusOutput,
      remoteStatusMessage: job.state === "QUEUED" ? "queued" : "processing",
      progress: create(ProgressSchema, { fraction: job.progress, stage }),
      checkAfter: durationFromMs(hintMs),
    }),
  });
}

/** The example plugin's handler. Stateless: the remote job id travels in remote_status_input. */
export function transcriber(api: SpeechApi): (request: InvokeRequest) => InvokeResponse {
  return (request) => {
    let input: TranscribeInput;
    try {
      input = fromBinary(TranscribeInputSchema, request.data ?? new Uint8Array(0));
    } catch (err) {
      return failed({
        message: "The request could not be read.",
        internalMessage: `data is not an asyncplugin.examples.v1.TranscribeInput: ${(err as Error).message}`,
        code: "INVALID_INPUT",
        rpcCode: 3,
      });
    }

    if (request.cancelRequested) {
      const jobId = request.status?.remoteStatusInput?.["remote_job_id"];
      if (typeof jobId === "string") api.cancel(jobId);
      return create(InvokeResponseSchema, {
        status: create(TaskSchema, { state: TaskState.CANCELLED, statusMessage: "Transcription cancelled" }),
      });
    }

    if (!request.isStatusCheck) {
      // New work: validate the input, then start the remote job.
      let url: URL | undefined;
      try {
        url = new URL(input.audioUrl);
      } catch {
        url = undefined;
      }
      if (url === undefined || (url.protocol !== "https:" && url.protocol !== "http:")) {
        return failed({
          message: "The audio URL is missing or invalid.",
          suggestion: "Give the http(s) URL of a WAV, MP3 or FLAC file.",
          code: "INVALID_AUDIO_URL",
          rpcCode: 3,
          metadata: { audio_url: input.audioUrl.slice(0, 200) },
        });
      }
      const job = api.submit(input.audioUrl, input.language, request.context?.idempotencyKey ?? "");
      return running(job);
    }

    // A status check: find the remote job again from what we stashed.
    const jobId = request.status?.remoteStatusInput?.["remote_job_id"];
    if (typeof jobId !== "string") {
      return failed({
        message: "The transcription job was lost.",
        internalMessage: "remote_status_input carries no remote_job_id",
        code: "REMOTE_JOB_ID_MISSING",
        rpcCode: 9,
      });
    }
    const job = api.status(jobId);
    if (job === undefined) {
      return failed({
        message: "The transcription job was lost.",
        internalMessage: `the speech API does not know job ${jobId}`,
        suggestion: "Try again.",
        code: "REMOTE_JOB_NOT_FOUND",
        rpcCode: 5,
        metadata: { remote_job_id: jobId },
      });
    }
    switch (job.state) {
      case "DONE": {
        const text = job.text ?? "";
        const transcript = create(TranscriptSchema, {
          text,
          wordCount: text.split(/\s+/).filter(Boolean).length,
        });
        return create(InvokeResponseSchema, { data: toBinary(TranscriptSchema, transcript) });
      }
      case "FAILED":
        return failed({
          message: "The audio file could not be decoded.",
          suggestion: "Upload a WAV, MP3 or FLAC file.",
          code: "UNSUPPORTED_AUDIO_FORMAT",
          rpcCode: 3,
          metadata: { remote_job_id: job.id },
          wrapped: {
            case: "wrappedError",
            value: create(ErrorSchema, {
              message: "Remote job failed.",
              code: "REMOTE_JOB_FAILED",
              wrapped: { case: "wrappedMessage", value: job.error ?? "unknown error" },
            }),
          },
        });
      case "CANCELLED":
        return failed({
          message: "The transcription was cancelled.",
          code: "REMOTE_JOB_CANCELLED",
          rpcCode: 1,
          metadata: { remote_job_id: job.id },
        });
      default:
        return running(job);
    }
  };
}
