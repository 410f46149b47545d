import type { ErrorCode } from "@moss/errors";
import type { FastifyReply } from "fastify";

/**
 * Answers an API request with a Moss error: the registry's HTTP status, and `{ error: <code>, message, ...extra }`
 * (a client that sees `MOSS_E_…` finds it in libs/errors/README.md).
 */
export function replyError(reply: FastifyReply, code: ErrorCode, message: string, extra: Record<string, unknown> = {}): FastifyReply {
  return reply.code(code.status).send({ error: code.code, message, ...extra });
}
