"""The peer side of `cargo xtask bench model`: llama.cpp (through llama-cpp-python) on the same
GGUF and the same rendered prompt as Cloister, with the same greedy loop: the prompt in batches of
512 tokens, its first token sampled, then one forward pass per further token, past end-of-turn.

usage: python llama_cpp_bench.py MODEL.gguf PROMPT.txt MAX_NEW THREADS
Prints one JSON line with the same fields as Cloister's child."""
import json
import sys
import time

from llama_cpp import Llama


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    model_path, prompt_path, max_new, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with open(prompt_path, encoding="utf-8") as f:
        prompt = f.read()
    t0 = time.perf_counter()
    llm = Llama(model_path=model_path, n_ctx=4096, n_batch=512, n_ubatch=512,
                n_threads=threads, n_threads_batch=threads, verbose=False)
    load_s = time.perf_counter() - t0
    # The rendered chat template carries its control tokens as text: parse them as such.
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    llm.reset()
    t1 = time.perf_counter()
    llm.eval(tokens)
    tok = llm.sample(top_k=1, temp=0.0, repeat_penalty=1.0)
    prompt_s = time.perf_counter() - t1
    out = [tok]
    t2 = time.perf_counter()
    while len(out) < max_new:
        llm.eval([tok])
        tok = llm.sample(top_k=1, temp=0.0, repeat_penalty=1.0)
        out.append(tok)
    decode_s = time.perf_counter() - t2
    print(json.dumps({
        "runtime": "llama.cpp",
        "load_s": load_s,
        "prompt_tokens": len(tokens),
        "prompt_s": prompt_s,
        "decode_steps": len(out) - 1,
        "decode_s": decode_s,
        "peak_rss_mib": peak_rss_mib(),
        "tokens": out,
        "prompt_ids": tokens,
    }))


if __name__ == "__main__":
    main()
