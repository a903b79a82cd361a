"""PyTorch CPU reference for the train stage's throughput.

The same architecture as dvx's small transformer (Llama layout: RMSNorm
pre-norm, rotary positions, SwiGLU MLP of 4x width, tied embeddings, byte
vocabulary of 259), the same batch and sequence length, AdamW and
global-norm clipping. Prints: `pytorch <threads> <tokens/s> <final loss>`.
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.Parameter(torch.ones(width))
        self.ln2 = nn.Parameter(torch.ones(width))
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(width, width, bias=False)
        self.v = nn.Linear(width, width, bias=False)
        self.o = nn.Linear(width, width, bias=False)
        self.gate = nn.Linear(width, 4 * width, bias=False)
        self.up = nn.Linear(width, 4 * width, bias=False)
        self.down = nn.Linear(4 * width, width, bias=False)

    def forward(self, x, cos, sin):
        b, t, c = x.shape
        h = rms(x, self.ln1)
        split = lambda y: y.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, c))
        h = rms(x, self.ln2)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def rms(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Model(nn.Module):
    def __init__(self, vocab, width, heads, layers):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.Parameter(torch.ones(width))
        self.heads = heads

    def forward(self, ids):
        t = ids.shape[1]
        hd = self.embed.weight.shape[1] // self.heads
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.outer(torch.arange(t).float(), inv)
        cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
        x = self.embed(ids)
        for b in self.blocks:
            x = b(x, cos, sin)
        return rms(x, self.norm) @ self.embed.weight.T


def main():
    p = argparse.ArgumentParser()
    for name, default in [("layers", 2), ("width", 128), ("heads", 4), ("seq", 128), ("batch", 8), ("steps", 20), ("threads", 2)]:
        p.add_argument(f"--{name}", type=int, default=default)
    a = p.parse_args()
    torch.manual_seed(1)
    torch.set_num_threads(a.threads)
    model = Model(259, a.width, a.heads, a.layers)
    with torch.no_grad():  # dvx's init: N(0, 0.02), residual outputs scaled by depth
        for name, p_ in model.named_parameters():
            if p_.dim() >= 2:
                std = 0.02 / math.sqrt(2 * a.layers) if name.endswith(("o.weight", "down.weight")) else 0.02
                p_.normal_(0.0, std)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}], lr=1e-3)
    data = torch.randint(97, 123, (a.batch * 4, a.seq))
    secs, tokens, loss = 0.0, 0, float("nan")
    for step in range(a.steps):
        t0 = time.perf_counter()
        batch = data[(step * a.batch) % data.shape[0]:][: a.batch]
        logits = model(batch[:, :-1])
        loss_t = F.cross_entropy(logits.reshape(-1, 259), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss_t.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        secs += time.perf_counter() - t0
        tokens += batch.shape[0] * (a.seq - 1)
        loss = loss_t.item()
    print(f"pytorch {a.threads} {tokens / secs:.0f} {loss:.4f}")


if __name__ == "__main__":
    main()
