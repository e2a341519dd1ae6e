"""The OpenAI chat-completions wire format of the HTTP front door: requests parsed into
admission's terms (`request.py`, `messages.py`, `tools.py`, with the fields Sluice refuses in
`surface.py`), and answers, stream chunks and errors rendered in OpenAI's shape
(`response.py`, `stream.py`)."""
