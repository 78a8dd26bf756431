"""Component relevance between layers from lxt 2.1 on Hugging Face transformers: the
independent reference of `dir-interact relevance`.

For each prompt (chat template with the generation prompt, as transformers tokenises it),
each layer pair (S, L) and each target direction c_j (row j of components.{L}), the seed is
c_j . hidden_states[L][-1] / stop_grad(c_j . hidden_states[L][-1]) (the paper's reference),
back-propagated with lxt's efficient AttnLRP rules (monkey_patch of modeling_llama /
modeling_qwen2); g is the gradient at hidden_states[S] (retain_grad; the input embeddings
for S = 0) at the last position, and R(k->j) = z_k (v_k . g) with z_k = v_k . h_S for the
source directions v_k (rows of components.{S}).

  python lxt_relevance_ref.py --gguf model.gguf --prompts p.csv --components c.safetensors \
      --pairs 0:1,9:10,5:12,19:20,29:30 --k 3 --out ref.npz [--limit 4]
  python lxt_relevance_ref.py ... --make-components c.safetensors --from svd.safetensors
      # first copies the first --k rows of the layers involved from a shift-svd file

Writes relevance.{S}.{L} [n_prompts, k, k] (float64), token_ids and offsets (int64).
"""
import argparse, csv, os, sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dir-label"))
from lxt_ref import stub_torchvision  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--components", required=True)
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--make-components", action="store_true")
    ap.add_argument("--from", dest="src")
    ap.add_argument("--out", required=True)
    ap.add_argument("--limit", type=int, default=None, help="first N prompts only")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    stub_torchvision()
    from lxt.efficient import monkey_patch
    from safetensors.numpy import load_file, save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.models.llama import modeling_llama
    from transformers.models.qwen2 import modeling_qwen2

    monkey_patch(modeling_llama)
    monkey_patch(modeling_qwen2)
    pairs = [tuple(int(x) for x in p.split(":")) for p in a.pairs.split(",")]
    layers = sorted({l for p in pairs for l in p})
    if a.make_components:
        src = load_file(a.src)
        save_file({f"components.{l}": np.ascontiguousarray(src[f"components.{l}"][: a.k]).astype(np.float32)
                   for l in layers}, a.components)
    comps = load_file(a.components)
    dirs = {l: torch.from_numpy(comps[f"components.{l}"][: a.k].astype(np.float32)) for l in layers}
    d, f = os.path.split(os.path.abspath(a.gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    emb_layer = model.get_input_embeddings()
    rows = list(csv.DictReader(open(a.prompts, newline="", encoding="utf-8")))[: a.limit]
    out = {f"relevance.{s}.{l}": [] for s, l in pairs}
    ids_all, offsets = [], [0]
    for r in rows:
        ids = tok.apply_chat_template([{"role": "user", "content": r["prompt"]}],
                                      add_generation_prompt=True, tokenize=True)
        ids = torch.tensor([ids])
        emb = emb_layer(ids).detach().requires_grad_(True)
        hs = model(inputs_embeds=emb, output_hidden_states=True, use_cache=False).hidden_states
        for h in hs[1:]:
            h.retain_grad()
        for s, l in pairs:
            src_state = hs[s]
            m = np.zeros((a.k, a.k))
            for j, c in enumerate(dirs[l]):
                for h in hs:
                    h.grad = None
                t = hs[l][0, -1] @ c
                (t / t.detach()).backward(retain_graph=True)
                g = src_state.grad[0, -1].double()
                h_s = src_state[0, -1].detach().double()
                for k, v in enumerate(dirs[s]):
                    v = v.double()
                    m[k, j] = float((v @ h_s) * (v @ g))
            out[f"relevance.{s}.{l}"].append(m)
        ids_all.extend(ids[0].tolist())
        offsets.append(len(ids_all))
    arrays = {k: np.stack(v) for k, v in out.items()}
    arrays["token_ids"] = np.array(ids_all, dtype=np.int64)
    arrays["offsets"] = np.array(offsets, dtype=np.int64)
    tmp = a.out + ".part.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
