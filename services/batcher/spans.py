"""Span attribute names the batcher adds beside the shared ones in shared/telemetry.py."""

# Calls answered by one packed upstream call (0: not packed).
PACKED_SIZE = "sluice.batch.packed_size"
# Input tokens packing saved for this call (negative when it fell back and paid extra).
PACK_TOKENS_SAVED = "sluice.batch.input_tokens_saved"
# True when a packed answer could not be used and the call went upstream on its own.
PACK_FALLBACK = "sluice.batch.pack_fallback"
# The Batch API job a Submit created or found.
JOB_ID = "sluice.batch.job_id"
