"""What a split's images and object crops gave: :class:`ImageCounts`, counted per tweet.

:class:`~bga_mner.data.images.ImageStore` records one :class:`ImageInfo` per readable image while it
prepares a split; :func:`tally` adds them up per tweet (a tweet whose image is missing or unreadable
has no crops), and :func:`log_counts` says what the split gave. The counts go into results.json
(``image_counts``, docs/ARCHITECTURE.md); the policy behind them is docs/data.md's "Objects and
images".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

log = logging.getLogger("bga_mner.data.images")


@dataclass
class ImageCounts:
    """What the images of a split's tweets gave (counted per tweet, as the batches see them).

    Attributes:
        tweets: tweets of the split.
        missing: tweets whose image file does not exist.
        unreadable: tweets whose image exists but is not a regular file or does not decode.
        boxes_clipped: top-K boxes (of the tweets with an image) that reach outside the image and
            were clipped to it.
        boxes_dropped: top-K boxes with less than one whole pixel inside the image: no crop.
        unlisted: tweets with an image that has no entry in the object source (no crops).
        beyond_k: boxes or crop files listed past the first K (not used).
        crops_missing: crop files (of the first K) that do not exist.
        crops_unreadable: crop files that are not regular files or do not decode.
        crops_per_tweet: ``[n_0, ..., n_K]``: the tweets with 0, 1, ..., K crops (a tweet without
            an image has 0).
    """

    tweets: int = 0
    missing: int = 0
    unreadable: int = 0
    boxes_clipped: int = 0
    boxes_dropped: int = 0
    unlisted: int = 0
    beyond_k: int = 0
    crops_missing: int = 0
    crops_unreadable: int = 0
    crops_per_tweet: list[int] = field(default_factory=list)

    @property
    def without_image(self) -> int:
        """Tweets without a readable image (``missing_images`` in results.json)."""
        return self.missing + self.unreadable

    def as_dict(self) -> dict[str, Any]:
        return {"tweets": self.tweets, "missing": self.missing, "unreadable": self.unreadable,
                "boxes_clipped": self.boxes_clipped, "boxes_dropped": self.boxes_dropped,
                "unlisted": self.unlisted, "beyond_k": self.beyond_k,
                "crops_missing": self.crops_missing, "crops_unreadable": self.crops_unreadable,
                "crops_per_tweet": list(self.crops_per_tweet)}


@dataclass
class ImageInfo:
    """What one readable image gave (counted once per image id, added once per tweet)."""

    crops: int = 0
    clipped: int = 0
    dropped: int = 0
    unlisted: bool = False
    beyond_k: int = 0
    crops_missing: int = 0
    crops_unreadable: int = 0


def tally(image_ids: Iterable[str], status: Callable[[str], str], info: Mapping[str, ImageInfo],
          k: int) -> ImageCounts:
    """The counts of a split's tweets.

    Args:
        image_ids: one per tweet (duplicates counted per tweet).
        status: ``missing``, ``unreadable`` or ``ok`` for an image id.
        info: the :class:`ImageInfo` of every image whose status is ``ok``.
        k: crops per image (K).
    """
    ids = list(image_ids)
    counts = ImageCounts(tweets=len(ids), crops_per_tweet=[0] * (k + 1))
    for i in ids:
        state = status(i)
        if state != "ok":
            counts.missing += state == "missing"
            counts.unreadable += state == "unreadable"
            counts.crops_per_tweet[0] += 1
            continue
        one = info[i]
        counts.boxes_clipped += one.clipped
        counts.boxes_dropped += one.dropped
        counts.unlisted += one.unlisted
        counts.beyond_k += one.beyond_k
        counts.crops_missing += one.crops_missing
        counts.crops_unreadable += one.crops_unreadable
        counts.crops_per_tweet[one.crops] += 1
    return counts


def log_counts(counts: ImageCounts, split: str, source: str | None) -> None:
    """Log what a split gave (info level; ``image_sources`` warns about a large share missing).

    Args:
        counts: the split's counts.
        split: name used in the log lines.
        source: the object source's name (None: no crops at all).
    """
    if counts.without_image:
        log.info("%s: %d of %d tweets without a readable image (%d missing files, %d unreadable)",
                 split, counts.without_image, counts.tweets, counts.missing, counts.unreadable)
    if counts.boxes_clipped or counts.boxes_dropped:
        log.info("%s: %d object boxes clipped to their image, %d dropped (less than a pixel "
                 "inside it)", split, counts.boxes_clipped, counts.boxes_dropped)
    if source is not None:
        log.info("%s: tweets with 0..%d %s crops: %s; %d images without an entry, %d entries "
                 "past K, %d crop files missing, %d unreadable", split,
                 len(counts.crops_per_tweet) - 1, source, counts.crops_per_tweet, counts.unlisted,
                 counts.beyond_k, counts.crops_missing, counts.crops_unreadable)
