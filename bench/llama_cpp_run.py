"""The llama.cpp side of bench/weights-8b.sh: the same GGUF file, the same token ids, 2
threads. `prefill`: every prompt evaluated with logits at every token (llama.cpp's
`logits_all`, as act-dump computes every token's states); prints tokens/s of evaluation only
(load excluded) and the load time. `decode`: greedy decoding of N tokens after each prompt;
prints tokens/s of the decoded tokens alone.
Usage: python bench/llama_cpp_run.py MODE MODEL.gguf IDS.json [N]
"""
import json
import sys
import time

from llama_cpp import Llama

mode, path, ids_file = sys.argv[1:4]
n_new = int(sys.argv[4]) if len(sys.argv) > 4 else 16
prompts = json.load(open(ids_file))
t0 = time.perf_counter()
llm = Llama(model_path=path, n_ctx=512, n_threads=2, n_threads_batch=2, n_batch=512,
            logits_all=(mode == "prefill"), verbose=False, use_mmap=True)
load = time.perf_counter() - t0
tokens = 0
elapsed = 0.0
for ids in prompts:
    llm.reset()
    t = time.perf_counter()
    llm.eval(ids)
    if mode == "prefill":
        elapsed += time.perf_counter() - t
        tokens += len(ids)
        continue
    t = time.perf_counter()
    for _ in range(n_new):
        tok = int(llm._scores[-1].argmax()) if hasattr(llm, "_scores") else llm.sample(temp=0)
        llm.eval([tok])
    elapsed += time.perf_counter() - t
    tokens += n_new
print(f"mode={mode} tokens={tokens} seconds={elapsed:.2f} tokens_per_s={tokens / elapsed:.2f} load_s={load:.1f}")
