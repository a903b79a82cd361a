"""Writes judge_train.jsonl: 400 chat examples that teach a tiny model to
answer phase0's judge requests (the exact text the `judge` kind sends for
pipelines/phase0.yaml's rubric and four dimensions) with a JSON object of
scores. Good answers (on topic, a full sentence) score 7-10, poor ones
(off topic, truncated, noise) 1-5. Written for dvx; deterministic."""

import json
import random

DIMS = ["helpfulness", "correctness", "clarity", "relevance"]
RUBRIC = "Instruction: {instruction}\nResponse: {output}"
ASK = ("\n\nScore the above on each of these dimensions from 1 to 10: " + ", ".join(DIMS)
       + ". Answer with a JSON object only, e.g. {" + ", ".join(f'"{d}": 10' for d in DIMS) + "}.")

GOOD = [
    "{t} is explained simply: it follows clear rules that you can observe.",
    "In short, {t} connects cause and effect in a way people rely on.",
    "Think of {t} as a process with a start, a middle and a result.",
    "A key point about {t} is that small steps add up over time.",
]
POOR = [
    "",
    "{{\"tool\": \"grep\", \"args\": [\"-rn\"",
    "the the the the the",
    "I do not know.",
    "xq zv 17 ##",
    "Bananas are yellow.",
]


def main():
    rng = random.Random(1)
    prompts = [json.loads(l) for l in open("prompts.jsonl")]
    out = []
    for i in range(400):
        p = prompts[i % len(prompts)]
        topic = p["instruction"].rstrip("?.").split(" about ")[-1].split(" is ")[-1]
        good = i % 2 == 0
        response = rng.choice(GOOD if good else POOR).format(t=topic)
        scores = {d: rng.randint(7, 10) if good else rng.randint(1, 5) for d in DIMS}
        user = RUBRIC.format(instruction=p["instruction"], output=response) + ASK
        answer = json.dumps(scores)
        out.append({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]})
    with open("judge_train.jsonl", "w") as f:
        for r in out:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
