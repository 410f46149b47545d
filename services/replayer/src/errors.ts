/** Errors of the replayer: one class per code of the registry in @moss/errors. */
import { Codes, createError } from "@moss/errors";

/** A failure that cannot be replayed as recorded: that failure's trial fails with the reason (terminal). */
export const UnreplayableError = createError("UnreplayableError", Codes.UNREPLAYABLE);
