"""Reference generation with Hugging Face transformers (PyTorch, f32, CPU): the job of our
`generate` tool, done by transformers' own `generate`.

Reads a prompt CSV (columns id, prompt), applies the model's chat template with the
generation prompt (as hf_acts.py and our tools do), and decodes greedily in batches of
--batch-size prompts in CSV order (left padding), at most --max-new-tokens new tokens each.

Stopping rule, the same as ours (crates/lm generate + tokenizer): a sequence stops at the
first stop token, which is not part of the answer and not counted; the stop tokens are the
tokenizer's EOS plus every end-of-turn token of END_OF_TURN that the vocabulary holds (for
SmolLM2: <|endoftext|> and <|im_end|>). A stop token may come as the last of the
--max-new-tokens steps, as ours. transformers keeps a finished row in the batch (fed padding)
until every row has stopped; ours drops it; that is part of what is measured.

Prints `prompts=P tokens=N seconds=S tokens_per_s=R`: N counts answer tokens (stop tokens
excluded, as ours' n_new_tokens), S the generate calls only (no model load, no tokenisation,
no decoding). --answers FILE writes id, response, n_new_tokens (CSV) for comparison;
--compare OURS.csv then reports how many answers are identical to ours.

  python hf_generate.py --gguf model.gguf --prompts p.csv [--answers hf.csv] [--compare ours.csv]
"""
import argparse, csv, os, sys, time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

# crates/lm/src/tokenizer.rs END_OF_TURN
END_OF_TURN = ["<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "<|end|>", "</s>"]


def stop_ids(tok, model, gguf):
    """Ours: for a GGUF file its tokenizer.ggml.eos_token_id, for a Hugging Face directory
    tokenizer_config's eos_token plus generation_config's eos_token_id; then END_OF_TURN.
    transformers' GGUF tokenizer names <|im_start|> its EOS for SmolLM2, so for a GGUF file the
    EOS comes from the generation config (read from the same metadata key), not the tokenizer."""
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    if not gguf and tok.eos_token_id is not None:
        ids.add(tok.eos_token_id)
    vocab = tok.get_vocab()
    ids |= {vocab[t] for t in END_OF_TURN if t in vocab}
    return sorted(ids)


def main():
    ap = argparse.ArgumentParser()
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--gguf")
    src.add_argument("--model")
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--answers", help="write id, response, n_new_tokens here")
    ap.add_argument("--compare", help="our generate output CSV: count identical answers")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.gguf:
        d, f = os.path.split(os.path.abspath(a.gguf))
        tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    else:
        tok = AutoTokenizer.from_pretrained(a.model)
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    model.eval()
    rows = list(csv.DictReader(open(a.prompts, newline="", encoding="utf-8")))
    texts = [tok.apply_chat_template([{"role": "user", "content": r["prompt"]}],
                                     tokenize=False, add_generation_prompt=True) for r in rows]
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    stops = stop_ids(tok, model, bool(a.gguf))
    gc = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=a.max_new_tokens,
                          eos_token_id=stops, pad_token_id=stops[0],
                          bos_token_id=tok.bos_token_id)
    batches = [tok(texts[s:s + a.batch_size], return_tensors="pt", padding=True,
                   add_special_tokens=False) for s in range(0, len(texts), a.batch_size)]
    new = []           # per row: answer token ids (stop token excluded)
    dt = 0.0
    with torch.no_grad():
        for enc in batches:
            t0 = time.perf_counter()
            out = model.generate(**enc, generation_config=gc)
            dt += time.perf_counter() - t0
            for row in out[:, enc["input_ids"].shape[1]:].tolist():
                k = next((j for j, t in enumerate(row) if t in stops), len(row))
                new.append(row[:k])
    ntok = sum(len(t) for t in new)
    print(f"prompts={len(texts)} tokens={ntok} seconds={dt:.3f} tokens_per_s={ntok / dt:.1f}"
          f" stop_ids={','.join(map(str, stops))}")
    answers = [tok.decode(t, skip_special_tokens=True, clean_up_tokenization_spaces=False)
               for t in new]
    if a.answers:
        with open(a.answers, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "response", "n_new_tokens"])
            for r, ans, t in zip(rows, answers, new):
                w.writerow([r["id"], ans, len(t)])
    if a.compare:
        ours = {r["id"]: r for r in csv.DictReader(open(a.compare, newline="", encoding="utf-8"))}
        same = sum(ours[r["id"]]["response"] == ans for r, ans in zip(rows, answers))
        same_len = sum(int(ours[r["id"]]["n_new_tokens"]) == len(t) for r, t in zip(rows, new))
        print(f"identical_answers={same}/{len(rows)} same_length={same_len}/{len(rows)}")


if __name__ == "__main__":
    sys.exit(main())
