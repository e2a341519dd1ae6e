"""The Anthropic Messages wire format of the HTTP front door (`POST /v1/messages`): requests read
into admission's terms (`request.py`, `blocks.py`), answers, event streams and errors rendered
in Anthropic's shape (`response.py`, `stream.py`), and the handlers that join them to the same
admission and pipeline as the OpenAI door (`door.py`)."""
