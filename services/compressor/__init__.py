"""Prompt compressor: shrinks long prompts before they reach a paid model.

It sits between the router and the model call. Prompts above a token threshold are cut to the
context that matters for the question in the last user turn: code blocks, tables and list items
stay whole, prose is ranked sentence by sentence against the question with a small embedding
model, and the best parts are kept in their original order. A prompt that is short, or bound for
a model whose input is free, passes through untouched.
"""
