#!/usr/bin/env python
"""Write the default caption list for bridging an audio model into an image–text space through
text alone (`crossmodal/aligner/captions/sounds-and-scenes.txt`).

A bridge head learns to map one model's text space onto another's from captions both text
towers embed, so the captions should cover what sounds and scenes people search for: sources
(animals, weather, machines, people, instruments), what they do, where, how near and how loud.
The lists below were written for crossmodal; the script combines them with a fixed seed into a
few thousand distinct lines, and adds the hand-written sentences at the end.

    python scripts/make_caption_list.py            # rewrites the shipped list
    python scripts/make_caption_list.py --out x.txt --count 500
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crossmodal" / "aligner" / "captions" / "sounds-and-scenes.txt"

SOURCES: dict[str, list[str]] = {
    "animal": [
        "a dog barking", "a small dog yapping", "a large dog growling", "a puppy whimpering", "a cat meowing",
        "a cat purring", "two cats hissing at each other", "a rooster crowing", "hens clucking", "a cow mooing",
        "a horse neighing", "a horse trotting on cobblestones", "sheep bleating", "a goat bleating", "pigs grunting",
        "a donkey braying", "birds chirping", "a songbird singing", "crows cawing", "seagulls crying",
        "an owl hooting", "a woodpecker drumming on a tree", "ducks quacking", "geese honking", "pigeons cooing",
        "frogs croaking", "crickets chirping", "cicadas buzzing", "bees buzzing", "a mosquito whining",
        "a fly buzzing against a window", "a lion roaring", "an elephant trumpeting", "wolves howling",
        "a parrot squawking", "a turkey gobbling", "a dolphin clicking", "a whale singing under water",
    ],
    "weather": [
        "rain falling on a roof", "rain on a window", "heavy rain on a tin roof", "a light drizzle",
        "thunder rumbling", "a thunderclap", "wind blowing through trees", "strong wind howling",
        "wind whistling through a gap", "hail hitting a car", "snow crunching underfoot", "a storm raging",
        "leaves rustling in the wind", "dripping water from a gutter",
    ],
    "water": [
        "waves crashing on a beach", "gentle waves lapping the shore", "a stream babbling", "a waterfall roaring",
        "a river flowing", "water boiling in a pot", "a tap running", "a bath filling", "a toilet flushing",
        "someone splashing in a pool", "a fountain splashing", "bubbles rising in an aquarium",
    ],
    "fire": ["a campfire crackling", "a fireplace crackling", "a match being struck", "fireworks exploding",
             "a candle flame flickering silently", "a gas burner hissing"],
    "vehicle": [
        "a car passing by", "a car engine starting", "a motorcycle revving", "a truck reversing and beeping",
        "a car horn honking", "traffic on a busy street", "a police siren", "an ambulance siren",
        "a fire engine siren", "a train passing", "a train horn", "a subway train arriving", "a tram bell ringing",
        "an airplane flying overhead", "a jet taking off", "a helicopter hovering", "a bicycle bell",
        "tyres screeching", "a bus stopping with a hiss of brakes", "a boat engine", "a ship's horn",
    ],
    "machine": [
        "a vacuum cleaner running", "a washing machine spinning", "a hair dryer", "a blender whirring",
        "a microwave beeping", "a kettle whistling", "a coffee machine gurgling", "a refrigerator humming",
        "a fan whirring", "an air conditioner humming", "a lawn mower", "a chainsaw", "a power drill",
        "a jackhammer", "a circular saw cutting wood", "a printer printing", "keyboard typing",
        "a mouse clicking", "a clock ticking", "an alarm clock ringing", "a phone ringing", "a phone vibrating",
        "a camera shutter clicking", "an elevator arriving with a ding", "an escalator humming",
        "a sewing machine", "a cash register", "a ticking metronome",
    ],
    "household": [
        "a door slamming", "a door creaking open", "a doorbell ringing", "someone knocking on a door",
        "keys jingling", "footsteps on a wooden floor", "footsteps on gravel", "high heels on a pavement",
        "dishes clattering in a sink", "cutlery on a plate", "a glass breaking", "a bottle being opened",
        "a can being opened", "ice cubes clinking in a glass", "frying food sizzling in a pan",
        "chopping vegetables on a board", "paper being torn", "pages of a book turning", "a zipper closing",
        "a drawer closing", "a chair scraping on the floor", "a pen writing on paper", "scissors cutting paper",
        "a shower running", "a toilet seat closing", "a light switch clicking",
    ],
    "people": [
        "a man speaking", "a woman speaking", "a child talking", "a baby crying", "a baby laughing",
        "people laughing", "a crowd cheering", "people clapping", "a crowd chatting in a hall",
        "children playing in a playground", "someone coughing", "someone sneezing", "someone snoring",
        "someone whistling a tune", "someone humming", "someone breathing heavily", "someone yawning",
        "someone eating crisps", "someone drinking through a straw", "someone whispering",
        "a teacher talking to a class", "a news presenter reading the news", "a man shouting",
        "a woman singing", "a choir singing", "a sports commentator", "someone counting out loud",
        "someone saying a number", "a voice reading out digits", "a person reading a list aloud",
    ],
    "music": [
        "a piano melody", "a slow piano chord", "an acoustic guitar being strummed", "an electric guitar solo",
        "a bass line", "a drum beat", "a drum roll", "a violin playing", "a cello playing", "an orchestra playing",
        "a trumpet fanfare", "a saxophone", "a flute melody", "a harmonica", "an accordion", "bagpipes",
        "church bells ringing", "wind chimes tinkling", "a music box", "a DJ mixing dance music",
        "a marching band", "a ukulele", "a harp being plucked", "a xylophone", "a synthesizer pad",
    ],
    "city": [
        "a busy café", "a restaurant kitchen", "a supermarket checkout", "a railway station announcement",
        "an airport terminal", "a construction site", "a street market", "a school playground",
        "a football stadium", "a shopping mall", "an underground car park", "a quiet library",
    ],
}

PLACES = ["", "in the distance", "close by", "outside", "indoors", "in a small room", "in a large hall",
          "at night", "in the morning", "in the rain", "on a quiet street", "in a park", "in the countryside",
          "in a forest", "on a farm", "by the sea", "in a city", "in a kitchen", "in an office", "in a garden",
          "in a tunnel", "in a car", "on a train", "in the mountains", "in the snow", "near a river"]
QUALITIES = ["", "loud", "quiet", "faint", "sudden", "repeated", "continuous", "muffled", "echoing",
             "rhythmic", "high-pitched", "low", "distorted", "clear", "brief"]
FRAMES = ["{s}", "{s} {p}", "the sound of {s}", "the sound of {s} {p}", "a recording of {s}",
          "a recording of {s} {p}", "{q} sound of {s}", "{q} sound of {s} {p}", "audio of {s}",
          "you can hear {s} {p}", "{s}, recorded {p}", "a short clip of {s}", "background noise of {s}",
          "a photo of {s}", "a picture of {s} {p}"]

SENTENCES = [
    "a quiet room with a clock ticking on the wall",
    "rain and distant thunder while a dog barks somewhere",
    "a street musician playing guitar as people walk past",
    "a dog barking in the park",
    "waves and seagulls on a windy beach",
    "an old train rattling over the rails",
    "children laughing while a ball bounces",
    "someone typing quickly on a laptop in a quiet office",
    "birdsong at dawn in a forest",
    "a kettle coming to the boil in a kitchen",
    "an empty church with a single bell",
    "a crowd singing along at a concert",
    "wind through tall grass on a hill",
    "a cat walking across a piano",
    "footsteps echoing in an empty corridor",
    "a car driving on a wet road",
    "a thunderstorm over a city at night",
    "a baby babbling happily",
    "a market vendor shouting prices",
    "a fire alarm going off in a building",
    "ice cracking on a frozen lake",
    "a heartbeat heard through a stethoscope",
    "a ping pong ball bouncing back and forth",
    "a basketball bouncing on a court",
    "a skateboard rolling on concrete",
    "tennis players hitting the ball",
    "a horse galloping across a field",
    "a spoon stirring a cup of tea",
    "a person walking through fallen leaves",
    "radio static between stations",
    "a handwritten digit on white paper",
    "a photo of the number seven",
    "someone saying seven",
    "a spoken digit",
    "a quiet forest with a woodpecker far away",
    "a dripping tap in the middle of the night",
    "a busy road heard through a closed window",
    "an audience applauding after a speech",
    "a cello and a piano playing together",
    "a lullaby sung softly",
]


def captions(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct captions (fewer if the lists cannot make that many), in a fixed order."""
    rng = random.Random(seed)
    sources = [s for group in SOURCES.values() for s in group]
    seen: dict[str, None] = dict.fromkeys(SENTENCES)
    attempts = 0
    while len(seen) < count and attempts < count * 50:
        attempts += 1
        frame = rng.choice(FRAMES)
        quality = rng.choice([q for q in QUALITIES if q]) if "{q}" in frame else ""
        article = "an" if quality[:1] in ("a", "e", "i", "o", "u") else "a"
        place = rng.choice([q for q in PLACES if q] if "recorded {p}" in frame else PLACES)
        text = frame.format(s=rng.choice(sources), p=place, q=f"{article} {quality}" if quality else "")
        text = " ".join(text.replace(" ,", ",").split()).rstrip(",")
        seen.setdefault(text, None)
    return list(seen)[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write (default: {OUT.relative_to(ROOT)})")
    parser.add_argument("--count", type=int, default=3000, help="captions to write (default: 3000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the combination (default: 0)")
    args = parser.parse_args(argv)
    lines = captions(args.count, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print(f"{len(lines)} captions written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
