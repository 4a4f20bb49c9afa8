"""A small synthetic multimodal NER set, generated in seconds, where the image matters.

Tweets come from templates and name lists; each tweet's image is drawn with PIL and holds one
object per entity, of a kind tied to the entity type (a person figure for PER, a building or a
flag for LOC, a logo badge for ORG, a ball, trophy or disc for MISC), plus distractor objects
(tree, cloud, car, star). What makes it multimodal:

- **ambiguous names** ("Jordan", "Chelsea", "Mercedes", ...) appear in type-neutral templates
  ("so proud of Jordan today") as PER in some tweets and LOC/ORG/MISC in others: only the image's
  object tells the type;
- **per-entity appearance**: an entity's colour and inner mark are keyed on its name (a hash), so
  text -> image is learnable and each image is distinctive (Fig. 3 retrieval);
- **cue words**: some tweets end with ``( pic : <word> )`` naming an object in the image;
- **no image**: about 10% of tweets have no image file (and no detections).

Benchmark options (all off by default; the defaults give exactly the original set, same rng draws):
``unseen_names`` holds out the last n names of each type (of the first ``names_per_type`` when
set) from train and valid, and test entities use them at ``unseen_rate``; ``image_told_cues=False``
drops the cue from every tweet with an ambiguous name, so that its type is told by the image alone;
``object_colours="type"`` draws each entity object in its type's hue (distractors grey), so the
image tells the type by colour, not only by the object's shape.
``meta.json`` marks the slices a claim is measured on: ``ambiguous_positions``,
``image_told_positions`` (ambiguous names in tweets with an image and no cue) and
``unseen_positions`` (names held out of training). docs/synthetic.md tells the whole story.

Output (``generate``): ``{train,valid,test}.txt`` (CoNLL with IMGID, as the real data),
``images/<id>.jpg``, ``objects.jsonl`` (the ``detect`` format, exact boxes; labels index
:data:`CATEGORIES`), and ``meta.json`` (per tweet: split, has_image, ambiguous word positions,
cue words and their positions, the slices' positions, entities with their drawn object). The same parameters give
byte-identical files. The data module generates it on demand into
``${paths.cache_dir}/synthetic-<hash of the parameters>`` (:func:`ensure_synthetic`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from PIL import Image, ImageDraw

from bga_mner.atomic import FULL_DISK_ERRNOS, full_disk_error
from bga_mner.config import SynthConfig
from bga_mner.data.conll import SPLITS, Tweet, write_conll
from bga_mner.data.detect import Detections, write_objects

# part of the cache hash: bump when the output for given parameters changes. 2: meta.json gained
# unseen_positions, image_told_positions and entities' "unseen" (the other files are unchanged)
GENERATOR_VERSION = 2

CATEGORIES: tuple[str, ...] = ("person", "building", "flag", "badge", "ball", "trophy", "disc",
                               "tree", "cloud", "car", "star")
TYPE_OBJECTS: dict[str, tuple[str, ...]] = {"PER": ("person",), "LOC": ("building", "flag"),
                                            "ORG": ("badge",), "MISC": ("ball", "trophy", "disc")}
DISTRACTORS: tuple[str, ...] = ("tree", "cloud", "car", "star")
CUE_WORDS: dict[str, tuple[str, ...]] = {
    "person": ("selfie", "portrait"), "building": ("skyline", "building"), "flag": ("flag",),
    "badge": ("logo", "badge"), "ball": ("ball",), "trophy": ("trophy", "cup"),
    "disc": ("album", "disc")}
# object_colours="type": each type's hue (an entity's shade of it is keyed on its name) and the
# greys of the distractors, so that the colour of an entity object tells its type
TYPE_COLOURS: dict[str, tuple[int, int, int]] = {"PER": (220, 40, 40), "LOC": (40, 80, 220),
                                                 "ORG": (40, 160, 60), "MISC": (240, 180, 20)}
GREYS: tuple[tuple[int, int, int], ...] = ((40, 40, 40), (80, 80, 80), (120, 120, 120), (160, 160, 160))
PALETTE: tuple[tuple[int, int, int], ...] = (
    (220, 40, 40), (40, 160, 60), (40, 80, 220), (240, 180, 20), (150, 50, 200), (20, 190, 200),
    (240, 110, 20), (120, 70, 30), (230, 60, 160), (90, 90, 90), (120, 200, 40), (20, 40, 110))

NAMES: dict[str, tuple[str, ...]] = {
    "PER": ("Maria Lopez", "John Carter", "Aisha Khan", "Kevin Durant", "Emma Stone", "Liam Neeson",
            "Priya Patel", "Carlos Mendes", "Yuki Tanaka", "Serena Williams", "Tom Brady",
            "Nora Jensen", "Ahmed Saleh", "Lucy Gray", "Marco Rossi", "Olivia Brown", "Chen Wei",
            "Fatima Diallo", "Hugo Martin", "Zoe Adams", "Drake", "Rihanna", "Ellen", "Obama"),
    "LOC": ("Paris", "Lagos", "Boston", "Tokyo", "Berlin", "Nairobi", "Lima", "Oslo", "Texas",
            "Mumbai", "Cape Town", "New York", "Rio", "London", "Seoul", "Manila", "Toronto",
            "Dublin", "Cairo", "Miami"),
    "ORG": ("Google", "Reuters", "Nike", "NASA", "Samsung", "UNICEF", "Real Madrid", "BBC",
            "Tesla", "Walmart", "FIFA", "Microsoft", "Lakers", "CNN", "Starbucks", "Adidas",
            "Red Cross", "Spotify"),
    "MISC": ("World Cup", "Olympics", "iPhone", "Super Bowl", "Grammys", "Oscars", "Coachella",
             "Wimbledon", "Tour de France", "Playstation", "Christmas", "Ramadan", "Euro 2016",
             "Game of Thrones", "Star Wars"),
}
AMBIGUOUS: dict[str, tuple[str, ...]] = {
    "Jordan": ("PER", "LOC"), "Washington": ("PER", "LOC"), "Chelsea": ("PER", "ORG", "LOC"),
    "Phoenix": ("PER", "LOC", "ORG"), "Madison": ("PER", "LOC"), "Georgia": ("PER", "LOC"),
    "Mercedes": ("PER", "ORG"), "Victoria": ("PER", "LOC"), "Florence": ("PER", "LOC"),
    "Austin": ("PER", "LOC"), "Jaguar": ("ORG", "MISC"), "Dakota": ("PER", "LOC"),
    "Amazon": ("ORG", "LOC"), "Ford": ("PER", "ORG"), "Tiffany": ("PER", "ORG"),
    "Avatar": ("MISC", "ORG"), "Eclipse": ("MISC", "ORG"), "Lincoln": ("PER", "LOC", "ORG"),
}
TEMPLATES: tuple[str, ...] = (  # typed slots: the context tells the type
    "{PER} scored twice tonight !", "happy birthday {PER} !", "{PER} says the new album drops friday",
    "interview with {PER} after the game", "{PER} and {PER} spotted together",
    "just landed in {LOC}", "sunset over {LOC} tonight", "traffic is terrible in {LOC} again",
    "flights from {LOC} to {LOC} cancelled", "{ORG} announces a new CEO", "shares of {ORG} fell today",
    "{ORG} signs a deal with {ORG}", "huge queue outside the {ORG} store",
    "watching the {MISC} final", "who else is excited for {MISC} ?", "tickets for {MISC} sold out",
    "{PER} joins {ORG} in {LOC}", "{PER} arrives in {LOC} for the {MISC}",
    "{ORG} fans celebrate in {LOC}",
    "{PER} wins at the {MISC}", "good morning everyone !", "this weather though", "can't sleep again",
)
NEUTRAL: tuple[str, ...] = (  # one type-neutral slot: only the image can tell an ambiguous name's type
    "can't stop talking about {ANY}", "{ANY} is trending again", "so proud of {ANY} today",
    "all eyes on {ANY}", "what a day for {ANY}", "{ANY} never disappoints", "thinking of {ANY} tonight",
    "big news from {ANY}", "love this shot of {ANY}")
HANDLES = ("newsdesk", "sportsfan", "mia_k", "daily_pic", "tweetbot", "joe88")
HASHTAGS = ("#news", "#tbt", "#love", "#photo", "#breaking", "#weekend")


def digest(cfg: SynthConfig) -> str:
    """The cache key of a set: every parameter of ``cfg`` and the generator's version."""
    blob = json.dumps({"version": GENERATOR_VERSION, **asdict(cfg)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:4], "big")


def entity_style(name: str, etype: str | None = None) -> tuple[tuple[int, int, int], int]:
    """The colour and inner-mark pattern (0-3) of an entity, keyed on its name.

    Args:
        name: the entity's name (its hash picks the colour or shade, and the pattern).
        etype: None: a colour of :data:`PALETTE` keyed on the name; a type: that type's hue of
            :data:`TYPE_COLOURS`, scaled by one of 5 shades (0.7-1.1) keyed on the name.
    """
    h = _stable_int(name)
    pattern = (h // len(PALETTE)) % 4
    if etype is None:
        return PALETTE[h % len(PALETTE)], pattern
    shade = 0.7 + 0.1 * (h % 5)
    return tuple(min(255, round(c * shade)) for c in TYPE_COLOURS[etype]), pattern


def _draw_object(d: ImageDraw.ImageDraw, kind: str, box: tuple[int, int, int, int],
                 colour: tuple[int, int, int], pattern: int | None) -> None:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) // 2
    if kind == "person":
        d.ellipse([cx - w // 4, y1, cx + w // 4, y1 + h // 3], fill=colour)
        shoulders = y1 + h // 3
        d.polygon([(x1, y2), (x2, y2), (cx + w // 4, shoulders), (cx - w // 4, shoulders)], fill=colour)
    elif kind == "building":
        d.rectangle([x1, y1 + h // 5, x2, y2], fill=colour)
        d.polygon([(x1, y1 + h // 5), (x2, y1 + h // 5), (cx, y1)], fill=colour)
        for wy in range(y1 + h // 3, y2 - 4, max(6, h // 6)):
            for wx in range(x1 + 3, x2 - 5, max(6, w // 4)):
                d.rectangle([wx, wy, wx + 3, wy + 3], fill=(255, 255, 210))
    elif kind == "flag":
        d.rectangle([x1, y1, x1 + max(2, w // 12), y2], fill=(60, 60, 60))
        d.rectangle([x1 + max(2, w // 12), y1, x2, y1 + h // 2], fill=colour)
    elif kind == "badge":
        d.ellipse([x1, y1, x2, y2], fill=colour, outline=(0, 0, 0), width=3)
        d.ellipse([x1 + w // 5, y1 + h // 5, x2 - w // 5, y2 - h // 5], outline=(255, 255, 255),
                  width=2)
    elif kind == "ball":
        d.ellipse([x1, y1, x2, y2], fill=colour, outline=(255, 255, 255), width=2)
        d.line([x1, (y1 + y2) // 2, x2, (y1 + y2) // 2], fill=(255, 255, 255), width=2)
    elif kind == "trophy":
        stem = y1 + 2 * h // 3
        d.polygon([(x1, y1), (x2, y1), (cx + w // 6, stem), (cx - w // 6, stem)], fill=colour)
        d.rectangle([x1 + w // 4, y2 - h // 6, x2 - w // 4, y2], fill=colour)
    elif kind == "disc":
        d.ellipse([x1, y1, x2, y2], fill=colour)
        cy = (y1 + y2) // 2
        d.ellipse([cx - w // 8, cy - h // 8, cx + w // 8, cy + h // 8], fill=(250, 250, 250))
    elif kind == "tree":
        d.rectangle([cx - w // 10, y1 + 2 * h // 3, cx + w // 10, y2], fill=(110, 70, 30))
        d.polygon([(x1, y1 + 2 * h // 3), (x2, y1 + 2 * h // 3), (cx, y1)], fill=colour)
    elif kind == "cloud":
        for dx in (0, w // 4, w // 2):
            d.ellipse([x1 + dx, y1 + h // 4, x1 + dx + w // 2, y1 + 3 * h // 4], fill=colour)
    elif kind == "car":
        d.rectangle([x1, y1 + h // 3, x2, y2 - h // 5], fill=colour)
        for wx in (x1 + w // 5, x2 - w // 5):
            d.ellipse([wx - h // 6, y2 - h // 3, wx + h // 6, y2], fill=(20, 20, 20))
    elif kind == "star":
        d.polygon([(cx, y1), (x2, y2), (x1, y1 + h // 3), (x2, y1 + h // 3), (x1, y2)], fill=colour)
    else:
        raise ValueError(f"unknown object kind {kind!r}")
    if pattern:  # the entity's inner mark: 1 = bar, 2 = post, 3 = dot (keyed on its name)
        my, r = y1 + h // 2, max(2, min(w, h) // 8)
        if pattern == 1:
            d.rectangle([cx - w // 4, my - r // 2, cx + w // 4, my + r // 2], fill=(0, 0, 0))
        elif pattern == 2:
            d.rectangle([cx - r // 2, my - h // 5, cx + r // 2, my + h // 5], fill=(0, 0, 0))
        else:
            d.ellipse([cx - r, my - r, cx + r, my + r], fill=(0, 0, 0))


def name_pools(cfg: SynthConfig) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Per entity type, the (seen, held-out) names of ``cfg``: the names a type draws from (the
    first ``names_per_type``, or all) split into the first ones and the last ``unseen_names``."""
    pools = {}
    for etype, names in NAMES.items():
        pool = names[:cfg.names_per_type]
        cut = len(pool) - cfg.unseen_names
        if cut < 1:
            raise ValueError(f"unseen_names={cfg.unseen_names}: {etype} has only {len(pool)} names")
        pools[etype] = (pool[:cut], pool[cut:])
    return pools


def image_told_positions(tweet_meta: dict) -> list[int]:
    """The ambiguous word positions of a tweet whose type only its image tells: the tweet has an
    image and no cue word (from ``has_image``, ``cue_words`` and ``ambiguous_positions``)."""
    if not tweet_meta["has_image"] or tweet_meta["cue_words"]:
        return []
    return list(tweet_meta["ambiguous_positions"])


def _fill_template(rng: random.Random, template: str, neutral: bool, ambiguous_rate: float,
                   names_per_type: int | None = None, unseen_names: int = 0,
                   test: bool = False, unseen_rate: float = 0.0
                   ) -> tuple[list[str], list[str], list[dict]]:
    """Words, BIO tags and entity records of one template (names from the first
    ``names_per_type`` of each list; None: all). With ``unseen_names``, the last n of those are
    held out: drawn only in ``test`` tweets, at ``unseen_rate`` (the rng draws of
    ``unseen_names=0`` are those of the original set)."""
    n = names_per_type
    words, tags, entities = [], [], []
    for token in template.split():
        if not (token.startswith("{") and token.endswith("}")):
            words.append(token)
            tags.append("O")
            continue
        ambiguous = neutral and rng.random() < ambiguous_rate
        unseen = False
        if ambiguous:
            name = rng.choice(sorted(AMBIGUOUS)[:n])
            etype = rng.choice(AMBIGUOUS[name])
        else:
            etype = rng.choice(sorted(NAMES)) if token == "{ANY}" else token[1:-1]
            pool = NAMES[etype][:n]
            if unseen_names:
                seen, held = pool[:-unseen_names], pool[-unseen_names:]
                unseen = test and rng.random() < unseen_rate
                name = rng.choice(held if unseen else seen)
            else:
                name = rng.choice(pool)
        parts = name.split()
        entities.append({"start": len(words), "end": len(words) + len(parts), "type": etype,
                         "name": name, "ambiguous": ambiguous, "unseen": unseen,
                         "object": rng.choice(TYPE_OBJECTS[etype])})
        words.extend(parts)
        tags.extend([f"B-{etype}"] + [f"I-{etype}"] * (len(parts) - 1))
    return words, tags, entities


def _make_tweet(rng: random.Random, cfg: SynthConfig, test: bool = False
                ) -> tuple[list[str], list[str], dict]:
    neutral = rng.random() < cfg.neutral_rate
    template = rng.choice(NEUTRAL if neutral else TEMPLATES)
    prefix = ["RT", f"@{rng.choice(HANDLES)}", ":"] if rng.random() < 0.2 else []
    words, tags, entities = _fill_template(rng, template, neutral, cfg.ambiguous_rate,
                                            cfg.names_per_type, cfg.unseen_names, test,
                                            cfg.unseen_rate)
    for e in entities:
        e["start"] += len(prefix)
        e["end"] += len(prefix)
    words, tags = prefix + words, ["O"] * len(prefix) + tags
    cues: list[dict] = []
    # image_told_cues=False: no cue (and no draw for one) in a tweet with an ambiguous name
    cue_allowed = cfg.image_told_cues or not any(e["ambiguous"] for e in entities)
    if entities and cue_allowed and rng.random() < cfg.cue_rate:
        cue = rng.choice(CUE_WORDS[rng.choice(entities)["object"]])
        cues.append({"position": len(words) + 3, "word": cue})
        words += ["(", "pic", ":", cue, ")"]
        tags += ["O"] * 5
    if rng.random() < 0.3:
        words.append(rng.choice(HASHTAGS))
        tags.append("O")
    if rng.random() < 0.3:
        words.append("http://t.co/" + "".join(rng.choice("abcdefghjkmnpqrstuvwxyz0123456789")
                                              for _ in range(10)))
        tags.append("O")
    meta = {"entities": entities, "cue_words": cues,
            "ambiguous_positions": [i for e in entities if e["ambiguous"]
                                    for i in range(e["start"], e["end"])],
            "unseen_positions": [i for e in entities if e["unseen"]
                                 for i in range(e["start"], e["end"])]}
    return words, tags, meta


def _draw_image(rng: random.Random, image_id: str, entities: list[dict], size: int,
                colours: str = "name") -> tuple[Image.Image, Detections]:
    """The tweet's image (entity objects + 0-2 distractors) and its exact detections
    (``colours``: ``SynthConfig.object_colours``)."""
    by_type = colours == "type"
    shade = rng.randint(215, 245)
    img = Image.new("RGB", (size, size), (shade, shade, rng.randint(215, 250)))
    d = ImageDraw.Draw(img)
    d.rectangle([0, int(size * 0.85), size, size], fill=(200, 200, 185))  # ground
    objects = [(e["object"], *entity_style(e["name"], e["type"] if by_type else None),
                rng.uniform(0.55, 0.99)) for e in entities]
    for _ in range(rng.randint(0, 2)):
        kind, colour = rng.choice(DISTRACTORS), rng.choice(PALETTE)
        if by_type:  # a grey picked by the same draw: the other draws stay those of "name"
            colour = GREYS[PALETTE.index(colour) % len(GREYS)]
        objects.append((kind, colour, None, rng.uniform(0.2, 0.8)))
    cells = [(c, r) for r in range(2) for c in range(3)]  # a 3x2 grid: one object per cell
    rng.shuffle(cells)
    cw, ch = size // 3, size // 2
    det = Detections(image_id)
    for (kind, colour, pattern, score), (c, r) in zip(objects, cells):
        w, h = int(cw * rng.uniform(0.6, 0.95)), int(ch * rng.uniform(0.6, 0.95))
        x1 = c * cw + rng.randint(0, cw - w)
        y1 = r * ch + rng.randint(0, ch - h)
        box = (x1, y1, x1 + w, y1 + h)
        _draw_object(d, kind, box, colour, pattern)
        det.boxes.append([float(v) for v in box])
        det.scores.append(round(score, 4))
        det.labels.append(CATEGORIES.index(kind))
        det.names.append(kind)
    return img, det.sorted()


def generate(out_dir: str | Path, cfg: SynthConfig = SynthConfig()) -> dict[str, int]:
    """Write the synthetic set into ``out_dir`` (see the module docstring); returns tweets per split.

    Args:
        out_dir: destination folder (created; existing files of the same names are overwritten).
        cfg: sizes, seed and rates.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(cfg.seed)
    sizes = {"train": cfg.train, "valid": cfg.valid, "test": cfg.test}
    meta: dict = {"config": asdict(cfg), "version": GENERATOR_VERSION,
                  "categories": list(CATEGORIES), "tweets": {}}
    detections: list[Detections] = []
    index = 0
    for split in SPLITS:
        tweets = []
        for _ in range(sizes[split]):
            image_id = f"syn{index:05d}"
            index += 1
            words, tags, tweet_meta = _make_tweet(rng, cfg, test=split == "test")
            has_image = rng.random() >= cfg.no_image_rate
            if has_image:
                img, det = _draw_image(rng, image_id, tweet_meta["entities"], cfg.image_size,
                                       cfg.object_colours)
                img.save(out / "images" / f"{image_id}.jpg", quality=90)
                detections.append(det)
            tweets.append(Tweet(image_id, words, tags))
            tweet_meta = {"split": split, "has_image": has_image, **tweet_meta}
            tweet_meta["image_told_positions"] = image_told_positions(tweet_meta)
            meta["tweets"][image_id] = tweet_meta
        write_conll(out / f"{split}.txt", tweets)
    write_objects(out / "objects.jsonl", detections)
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return sizes


def ensure_synthetic(cache_root: str | Path, cfg: SynthConfig = SynthConfig()) -> Path:
    """The folder of the synthetic set for ``cfg`` under ``cache_root``, generated if absent.

    Generation goes to a temporary sibling folder renamed into place, so a crash leaves no half
    set. Concurrent runs (``make -j``) generate it once: the first holds an ``fcntl.flock`` on
    ``.<folder name>.lock`` while it generates, the others wait for it and find the set; a folder
    without ``meta.json`` (left by an older version) is replaced under the same lock, so no
    process removes a set another one is reading. The lock file is removed once the set is in
    place (a process still waiting on it finds the set when it gets the lock; one arriving later
    finds it without locking).
    """
    cache_root = Path(cache_root)
    final = cache_root / f"synthetic-{digest(cfg)}"
    if (final / "meta.json").is_file():
        return final
    cache_root.mkdir(parents=True, exist_ok=True)
    lock_path = cache_root / f".{final.name}.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # freed when the file closes, or by the kernel on a crash
        if (final / "meta.json").is_file():  # generated by another process while this one waited
            return final
        tmp = Path(tempfile.mkdtemp(dir=cache_root, prefix=f".{final.name}-"))
        try:
            generate(tmp, cfg)
            shutil.rmtree(final, ignore_errors=True)  # a stale folder without meta.json
            os.rename(tmp, final)
            lock_path.unlink(missing_ok=True)
        except OSError as err:  # a full disk: name the set's folder (the writes do not)
            if err.filename is None and err.errno in FULL_DISK_ERRNOS:
                raise full_disk_error(final, err) from err
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
