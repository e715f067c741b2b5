-- The journal's one-statement append (docs/write-path.md, "One round trip
-- per batch"): when a batch meets anything but the common case — a lease
-- that moved, a command applied before, a claim taken — the statement calls
-- this to abort itself, with nothing written, and the journal writes that
-- batch with its step-by-step transaction instead. SQLSTATE SF001 tells the
-- journal it was this refusal and not an error.

CREATE FUNCTION journal_refuse(reason text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'SF001', MESSAGE = reason;
END
$$;
