"""Learned routing: an answer scorer for the cascade and a start-tier predictor.

FrugalGPT (Chen, Zaharia, Zou 2023) gates a cascade with a learned scorer of P(answer is right);
RouteLLM (Ong et al. 2024) routes each prompt from its embedding and measures the trade-off with
APGR. This package holds both ideas as pure domain code (numpy at run time, no gRPC): the router
uses `runtime.LearnedRouting` (scorer + start tier per model class); `train` refits the shipped
model files from RouterBench `*_train` splits; `simulate` and `evaluate` replay policies offline
for the routing benchmark. See README.md.
"""
