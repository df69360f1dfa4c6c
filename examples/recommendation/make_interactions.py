"""Writes interactions.jsonl: one user's recent history (what they bought) -> the next item they bought.

The catalogue and the shopping habits below were written for tuneforge's example; users are drawn with a fixed seed,
so the file is reproducible: `python make_interactions.py`. Each user shops within one interest, with an occasional
unrelated purchase mixed into the history (real histories are noisy), and the next item is another item of that
interest they have not bought yet.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CATALOGUE = {
    "hiking": ["Trekking poles: collapsible aluminium poles with cork grips for long mountain walks",
               "Waterproof hiking jacket: breathable three-layer shell with a storm hood",
               "Two-person backpacking tent: 1.4 kg, pitches in five minutes, for wild camping",
               "Trail headlamp: 400 lumens, rechargeable, red night mode for the campsite",
               "Merino hiking socks: cushioned, blister-free on multi-day treks"],
    "baking": ["Sourdough starter kit: live rye culture, banneton basket and a dough scraper",
               "Stand mixer: 5-litre bowl, dough hook and whisk for bread and cakes",
               "Digital kitchen scale: weighs flour and water to the gram",
               "Cast-iron Dutch oven: bakes crusty loaves with a crackling crust",
               "Silicone baking mats: non-stick sheets for cookies and macarons"],
    "gaming": ["Mechanical gaming keyboard: hot-swappable switches and RGB lighting",
               "Wireless gaming mouse: 26k DPI sensor, 70 hours of battery",
               "Gaming headset: surround sound and a noise-cancelling microphone for team chat",
               "27-inch 165 Hz monitor: fast IPS panel for competitive shooters",
               "Controller charging dock: charges two gamepads overnight"],
    "baby": ["Baby monitor: video, night vision and room temperature alerts",
             "Convertible car seat: rear-facing for newborns, forward-facing for toddlers",
             "Organic cotton sleep sacks: wearable blankets for safe sleep",
             "Bottle steriliser and dryer: kills germs in eight minutes",
             "Soft board books: first words and animal pictures for babies"],
    "gardening": ["Ergonomic pruning shears: bypass blades for roses and shrubs",
                  "Raised garden bed: cedar planter for vegetables and herbs",
                  "Heirloom tomato seeds: twelve varieties for the vegetable patch",
                  "Kneeling pad and garden stool: flips over to save your knees while weeding",
                  "Compost bin: rotating tumbler that turns kitchen scraps into soil"],
    "coffee": ["Burr coffee grinder: 40 grind settings from espresso to cold brew",
               "Pour-over coffee dripper: ceramic cone with paper filters",
               "Gooseneck kettle: precise pour and temperature control for brewing",
               "Single-origin Ethiopian beans: light roast with notes of blueberry",
               "Milk frother: steams and foams milk for lattes and cappuccinos"],
    "running": ["Carbon-plate running shoes: responsive foam for race day",
                "GPS running watch: pace, heart rate and interval training plans",
                "Reflective running vest: stay visible on early-morning runs",
                "Foam roller: eases sore calves and hamstrings after long runs",
                "Energy gels: caffeine and electrolytes for the marathon"],
    "reading": ["E-reader with warm light: glare-free screen, weeks of battery",
                "Book light: clip-on reading lamp for reading in bed",
                "Historical fiction box set: three novels set in medieval Europe",
                "Leather bookmarks: hand-stitched, set of four",
                "Reading journal: track the books you finish and your favourite quotes"],
    "yoga": ["Non-slip yoga mat: 6 mm thick with alignment lines",
             "Cork yoga blocks: firm support for balance poses",
             "Meditation cushion: buckwheat-filled zafu for sitting practice",
             "Yoga strap: cotton belt for deeper stretches",
             "Breathable yoga leggings: high waist, squat-proof fabric"],
    "pets": ["Orthopaedic dog bed: memory foam for older dogs with stiff joints",
             "Retractable dog lead: 5 m tape with a one-button brake",
             "Cat scratching post: sisal rope tower with a sleeping perch",
             "Grain-free puppy food: salmon recipe for growing dogs",
             "Interactive treat puzzle: keeps a bored dog busy for an hour"],
}
VERBS = ["bought", "ordered", "purchased", "picked up"]


def title(item: str) -> str:
    return item.split(":")[0].lower()


def users(n: int, seed: int = 7) -> list[dict[str, str]]:
    rng = random.Random(seed)
    interests = sorted(CATALOGUE)
    rows = []
    for _ in range(n):
        interest = rng.choice(interests)
        items = rng.sample(CATALOGUE[interest], 3)
        history = [title(i) for i in items[:2]]
        if rng.random() < 0.4:  # an unrelated purchase, e.g. a gift
            other = rng.choice([k for k in interests if k != interest])
            history.insert(rng.randrange(3), title(rng.choice(CATALOGUE[other])))
        rows.append({"history": f"Recently {rng.choice(VERBS)}: " + "; ".join(history), "item": items[2]})
    return rows


if __name__ == "__main__":
    out = Path(__file__).with_name("interactions.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in users(400)))
    print(f"wrote {out}")
