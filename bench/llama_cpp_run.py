"""The llama.cpp side of bench/weights-8b.sh: the same GGUF file, the same token ids, 2
threads. `prefill`: every prompt evaluated with logits at every token (llama.cpp's
`logits_all`, as act-dump computes every token's states); prints tokens/s of evaluation only
(load excluded) and the load time. `decode`: greedy decoding of N tokens after each prompt;
prints tokens/s of the decoded tokens alone. `decode-batch`: the same with every prompt its
own sequence of one batch (llama.cpp's parallel decoding: one `llama_decode` per step
computes one new token of every sequence), as `generate --batch-size` decodes; prints tokens/s
of all sequences' decoded tokens.
Usage: python bench/llama_cpp_run.py MODE MODEL.gguf IDS.json [N]
"""
import json
import sys
import time

from llama_cpp import Llama

mode, path, ids_file = sys.argv[1:4]
n_new = int(sys.argv[4]) if len(sys.argv) > 4 else 16
prompts = json.load(open(ids_file))


def decode_batch():
    """Greedy decoding of all prompts at once through llama.cpp's low-level batch API."""

    import llama_cpp as lc
    import numpy as np

    lc.llama_backend_init()
    t0 = time.perf_counter()
    model = lc.llama_model_load_from_file(path.encode(), lc.llama_model_default_params())
    cp = lc.llama_context_default_params()
    n = len(prompts)
    cp.n_ctx = n * (max(map(len, prompts)) + n_new + 8)
    cp.n_batch = cp.n_ubatch = 512
    cp.n_seq_max = n
    cp.n_threads = cp.n_threads_batch = 2
    ctx = lc.llama_init_from_model(model, cp)
    load = time.perf_counter() - t0
    vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model))
    batch = lc.llama_batch_init(512, 0, 1)

    def run(items):  # items: (token, position, sequence, logits?) -> argmax of each logits row
        batch.n_tokens = len(items)
        for i, (tok, pos, seq, want) in enumerate(items):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, pos, 1
            batch.seq_id[i][0], batch.logits[i] = seq, want
        if lc.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed")
        out = []
        for i, it in enumerate(items):
            if it[3]:
                row = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, i), shape=(vocab,))
                out.append(int(row.argmax()))
        return out

    nxt = []
    for s, ids in enumerate(prompts):  # prefill, one sequence at a time (not timed)
        for c in range(0, len(ids), 512):
            part = ids[c:c + 512]
            last = run([(t, c + j, s, c + j == len(ids) - 1) for j, t in enumerate(part)])
        nxt += last
    t = time.perf_counter()
    for k in range(n_new):
        nxt = run([(nxt[s], len(ids) + k, s, True) for s, ids in enumerate(prompts)])
    elapsed = time.perf_counter() - t
    tokens = n * n_new
    print(f"mode={mode} tokens={tokens} seconds={elapsed:.2f} tokens_per_s={tokens / elapsed:.2f} load_s={load:.1f}")
    sys.exit(0)


if mode == "decode-batch":
    decode_batch()
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
