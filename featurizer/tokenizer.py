"""A byte-level BPE tokenizer trained here, for checkpoints built without a hub download.

`train_tokenizer` learns merges from a small built-in corpus (the prompt, chat roles and the words
demo titles are made of) with the `tokenizers` library, deterministically, and can place its
special tokens at a large model's ids (Qwen's <|video_pad|> = 151656), so a tiny tokenizer speaks
that model's token-id layout. `featurizer.families` says which specials each family has.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

TOKENIZER_VOCAB = 1024  # trained BPE merges + the 256 byte symbols; specials come on top

# What the tokenizer is trained on: the prompt, the chat roles, and the words demo titles are made
# of (topics, palettes, shapes, motion). Byte-level BPE still encodes any other text, byte by byte.
_CORPUS = """
This short video is titled "{title}". Describe its topic, look and motion in one sentence.
Describe the video. What happens in this video? Summarize the content of the clip.
system user assistant You are a helpful assistant.
The video shows a scene with colors, shapes and movement. It is a short clip about a topic.
cooking baking recipe kitchen food pasta cake soup salad breakfast dinner street food
sports football soccer basketball tennis running cycling swimming skiing surfing yoga workout
music concert guitar piano drums singing dance dancing party festival
travel city beach mountain forest river lake ocean sunset sunrise night skyline road trip
animals cat cats dog dogs puppy kitten bird birds fish horse pets wildlife zoo
gaming game games play esports tutorial review unboxing tech phone gadget science space
fashion makeup beauty style outfit hair art drawing painting craft diy design
comedy funny prank vlog daily life family kids baby school study news car cars driving
nature weather rain snow flowers garden plants farm timelapse slow motion highlights
red orange yellow green blue purple pink brown black white gray grey gold silver dark bright
circle circles square squares triangle triangles stripe stripes dot dots line lines grid wave
waves ring rings star stars spiral checkerboard gradient noise pattern texture
moving moves move motion still static fast slow spinning rotating bouncing sliding drifting
zooming panning flashing pulsing shaking flowing falling rising left right up down across
topic look palette shape shapes colour color colors light shadow background foreground
one two three four five six seven eight nine ten first second part episode day week best top
a an the of in on at to and or with for from by is are was it this that its their
"""


def corpus_lines() -> list[str]:
    lines = [line.strip() for line in _CORPUS.strip().splitlines() if line.strip()]
    return lines * 4  # repetition gives common words merges of their own


def train_tokenizer(
    specials: tuple[str, ...],
    fixed_ids: Mapping[str, int] | None = None,
    vocab_size: int = TOKENIZER_VOCAB,
) -> Tokenizer:
    """A byte-level BPE `tokenizers.Tokenizer` trained on the built-in corpus (deterministic).

    Without `fixed_ids` the special tokens are numbered right after the trained vocabulary, in the
    order given. With `fixed_ids` (token -> id, every special must have one) they sit at those ids,
    and the trained tokens take the smallest ids left free, so a small tokenizer can speak a large
    model's token-id layout (e.g. Qwen2's <video> = 151647)."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus_lines(), trainer)

    trained = sorted(bpe.get_vocab().items(), key=lambda kv: kv[1])  # [(token, id)] by id
    if fixed_ids is None:
        special_ids = {tok: len(trained) + i for i, tok in enumerate(specials)}
    else:
        missing = [tok for tok in specials if tok not in fixed_ids]
        if missing:
            raise ValueError(f"no token id given for special tokens {missing}")
        special_ids = {tok: int(fixed_ids[tok]) for tok in specials}
    taken = set(special_ids.values())
    vocab: dict[str, int] = dict(special_ids)
    next_id = 0
    for token, _ in trained:
        while next_id in taken:
            next_id += 1
        vocab[token] = next_id
        next_id += 1

    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in _merges_of(bpe)]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = bpe.pre_tokenizer
    tok.decoder = bpe.decoder
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def _merges_of(tok: Tokenizer) -> list:
    return json.loads(tok.to_str())["model"]["merges"]
