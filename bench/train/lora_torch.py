"""torch + PEFT reference for LoRA fine-tuning of a Llama-shaped base.

A LlamaForCausalLM with random weights in the given dtype (the base is
frozen), LoRA r16/alpha 32/dropout 0.05 on q_proj and v_proj in f32 for the
f32 base and in the base's dtype otherwise (as PEFT does), AdamW on the
adapters, random token ids. The default shape is Llama-3.2-1B's.
Prints: `torch-<dtype> <threads> <tokens/s> <peak RSS MiB> <last loss> <tokens/s
with the first step>`: the first figure leaves out the first step (allocator
and kernel warm-up), the last counts it, as dvx's figure counts every step.
"""
import argparse
import resource
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    p = argparse.ArgumentParser()
    for name, default in [("layers", 16), ("width", 2048), ("mlp", 8192), ("heads", 32), ("kv_heads", 8),
                          ("vocab", 128256), ("seq", 128), ("batch", 2), ("steps", 5), ("threads", 1)]:
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    a = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.width, intermediate_size=a.mlp,
                      num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                      max_position_embeddings=max(a.seq, 2048), tie_word_embeddings=True, rope_theta=500000.0)
    torch.set_default_dtype(dtype)
    model = LlamaForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                      task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    model.train()
    opt = torch.optim.AdamW([p_ for p_ in model.parameters() if p_.requires_grad], lr=1e-4)
    data = torch.randint(0, a.vocab, (a.batch * 4, a.seq))
    secs, tokens, loss = 0.0, 0, float("nan")
    all_secs, all_tokens = 0.0, 0
    for step in range(a.steps + 1):
        t0 = time.perf_counter()
        batch = data[(step * a.batch) % data.shape[0]:][: a.batch]
        out = model(input_ids=batch, labels=batch)
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_([p_ for p_ in model.parameters() if p_.requires_grad], 1.0)
        opt.step()
        took = time.perf_counter() - t0
        all_secs += took
        all_tokens += batch.numel()
        if step > 0:  # the first step warms up allocators and kernels
            secs += took
            tokens += batch.numel()
        loss = out.loss.item()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch-{a.dtype} {a.threads} {tokens / secs:.1f} {rss:.0f} {loss:.4f} {all_tokens / all_secs:.1f}")


if __name__ == "__main__":
    main()
