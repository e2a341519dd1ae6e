"""all-MiniLM-L6-v2 sentence embeddings, shared by the services that match text by meaning.

`minilm` holds the protocol, the torch backend and the micro-batcher; `onnx` the ONNX Runtime
backend (same vectors, several times faster on CPU) with the torch one as its fallback;
`onnx_export` writes the ONNX graph from the installed model (fp32, or int8 quantised);
`files` finds the model's files and names the vector space they embed into.
"""
