"""Writes prompts.jsonl: 300 instruction prompts in the style of Alpaca and
databricks-dolly-15k (same record shape: instruction / input / category),
written for dvx from the hand-made topics and forms below. No record is
copied from either dataset. Deterministic: running it again gives the same
bytes. A few prompts are near-duplicate rewordings on purpose, so that
dedup at 0.8 has something to find."""

import json
import random

TOPICS = [
    "photosynthesis", "compound interest", "the water cycle", "binary search", "public key cryptography",
    "the French Revolution", "plate tectonics", "supply and demand", "vaccines", "black holes",
    "the Roman aqueducts", "climate change", "recursion", "the stock market", "sleep",
    "volcanoes", "the printing press", "electric cars", "bees", "the Internet",
    "coffee", "the Great Wall of China", "machine learning", "inflation", "the human heart",
    "solar panels", "chess openings", "the Silk Road", "rainbows", "the immune system",
    "version control", "composting", "the Moon landing", "tides", "jazz",
]

FORMS = {
    "open_qa": ["What is {t}?", "Why does {t} matter?", "How does {t} work?"],
    "brainstorming": ["List three ideas for a school project about {t}.", "Give me five questions a child might ask about {t}."],
    "summarization": ["Summarize what everyone should know about {t} in two sentences."],
    "creative_writing": ["Write a short poem about {t}.", "Write a one-paragraph story in which {t} plays a part."],
    "classification": ["Is {t} mainly a topic of science, history or economics?"],
    "general_qa": ["Explain {t} to a ten-year-old.", "What is a common misconception about {t}?"],
    "information_extraction": ["Name two key terms used when talking about {t} and define them."],
}

# Rewordings of prompts above (near duplicates: same words, one changed or added).
NEAR = [
    ("What is {t}?", "What is {t}, really?"),
    ("Explain {t} to a ten-year-old.", "Please explain {t} to a ten-year-old."),
    ("How does {t} work?", "How does {t} actually work?"),
]


def main():
    rng = random.Random(0)
    records = []
    for topic in TOPICS:
        for category, forms in FORMS.items():
            for form in forms:
                records.append({"instruction": form.format(t=topic), "input": "", "category": category})
    rng.shuffle(records)
    records = records[:280]
    for topic in rng.sample(TOPICS, 20):
        _, near = rng.choice(NEAR)
        cat = "open_qa" if near.startswith(("What", "How")) else "general_qa"
        records.append({"instruction": near.format(t=topic), "input": "", "category": cat})
    with open("prompts.jsonl", "w") as f:
        for i, r in enumerate(records):
            f.write(json.dumps({"id": i, **r}) + "\n")


if __name__ == "__main__":
    main()
