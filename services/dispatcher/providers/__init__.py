"""Provider protocol clients; every upstream Sluice speaks to is OpenAI-compatible."""
