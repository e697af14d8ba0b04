"""One tracked face and everything the loop keeps about it (ring, scorer, tallies, open clip), and the registry
that creates faces on first sight and evicts them in one place."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from stream.config import VerdictPolicy
from stream.loop.annotate import thumbnail_jpeg
from stream.loop.evidence_clips import OpenClip
from stream.loop.rings import FaceRing
from stream.loop.verdicts import FaceScorer, ScoreUpdate
from stream.records import FaceSummary, FaceUpdate, FinishedClip, Frame, VerdictState


@dataclass(frozen=True)
class RingShape:
    """Every face's ring has this shape: `capacity` frames of `feature_dim` features (and logits, for the seed
    architecture) and `thumb_size`² crops for evidence clips."""

    capacity: int
    feature_dim: int
    has_logits: bool
    thumb_size: int

    def new_ring(self) -> FaceRing:
        return FaceRing(self.capacity, self.feature_dim, self.has_logits, self.thumb_size)


@dataclass
class Face:
    """One face of one stream, owned by the loop thread."""

    stream_id: str
    track_id: int
    ring: FaceRing
    scorer: FaceScorer
    first_seen: float
    first_t_media: float | None
    last_seen: float = 0.0
    last_t_media: float | None = None
    crops: int = 0  # crops encoded (pushed into the ring)
    crops_skipped: int = 0  # crops left out because the encoder had no time for them (stream/overload.py)
    share: int = 0  # crops encoded in the encoder's round-robin count (FaceRegistry.requeue, stream/overload.py) ...
    turn: int = 0  # ... and its place in the round-robin queue: lower waited longer
    scores: int = 0
    p_fake_sum: float = 0.0
    p_fake_max: float = 0.0
    verdict: VerdictState = VerdictState.UNSURE
    rolling_p_fake: float | None = None
    gone: bool = False
    clip: OpenClip | None = None
    pending_thumbnail: bytes | None = field(default=None, repr=False)  # sent with the next update, then dropped

    def add_crop(self, frame: Frame, crop_bgr: np.ndarray, features: np.ndarray, logits: np.ndarray | None) -> None:
        """Push one encoded crop into the ring."""
        self.ring.push(features, logits, crop_bgr, frame.index, frame.t_media, frame.t_capture)
        self._saw(frame)
        self.crops += 1

    def skip_crop(self, frame: Frame) -> None:
        """The face was in this frame but its crop was not encoded: its ring and window stay as they were."""
        self._saw(frame)
        self.crops_skipped += 1

    def _saw(self, frame: Frame) -> None:
        self.last_seen, self.last_t_media = frame.t_capture, frame.t_media

    def window_due(self, window: int, stride: int) -> bool:
        """A window score is due: the ring holds a whole window and this crop falls on the stride."""
        return len(self.ring) >= window and self.ring.pushed_total % stride == 0

    def add_score(self, p_fake: float, t: float) -> ScoreUpdate:
        update = self.scorer.update(p_fake, t)
        self.scores += 1
        self.p_fake_sum += p_fake
        self.p_fake_max = max(self.p_fake_max, p_fake)
        self.rolling_p_fake = update.rolling_p_fake
        self.verdict = update.verdict.state
        return update

    def feed_clip(self, crop_bgr: np.ndarray) -> FinishedClip | None:
        if self.clip is None:
            return None
        finished = self.clip.feed(crop_bgr)
        if finished is not None:
            self.clip = None
        return finished

    def finish_clip(self) -> FinishedClip | None:
        clip, self.clip = self.clip, None
        return None if clip is None else clip.finish()

    def update(self) -> FaceUpdate:
        """The face for the sinks; carries its thumbnail only the first time."""
        thumbnail, self.pending_thumbnail = self.pending_thumbnail, None
        return self._record(thumbnail)

    def snapshot(self) -> FaceUpdate:
        """The face for other threads' reads: no thumbnail, nothing consumed."""
        return self._record(None)

    def _record(self, thumbnail: bytes | None) -> FaceUpdate:
        return FaceUpdate(
            stream_id=self.stream_id,
            track_id=self.track_id,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            first_t_media=self.first_t_media,
            last_t_media=self.last_t_media,
            state="gone" if self.gone else "live",
            verdict=self.verdict,
            rolling_p_fake=self.rolling_p_fake,
            frames_scored=self.scores,
            thumbnail_jpeg=thumbnail,
            crops=self.crops,
            crops_skipped=self.crops_skipped,
        )

    def summary(self) -> FaceSummary:
        return FaceSummary(
            stream_id=self.stream_id,
            track_id=self.track_id,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            first_t_media=self.first_t_media,
            last_t_media=self.last_t_media,
            frames_scored=self.scores,
            verdict=self.verdict,
            mean_p_fake=self.p_fake_sum / self.scores if self.scores else None,
            max_p_fake=self.p_fake_max if self.scores else None,
            crops=self.crops,
            crops_skipped=self.crops_skipped,
        )


class FaceRegistry:
    """Every live face, keyed by (stream, track): created on first sight, evicted here and nowhere else.

    Faces that have gone leave a small summary behind (for the end-of-run report); their ring is freed. The registry
    also keeps the encoder's round-robin queue: a new face joins it at the back, and so does a face whose crop was
    just encoded, its share one higher.
    """

    def __init__(self, ring_shape: RingShape, policy: VerdictPolicy) -> None:
        self._ring_shape = ring_shape
        self._policy = policy
        self._live: dict[tuple[str, int], Face] = {}
        self._gone: list[FaceSummary] = []
        self._turns = itertools.count()

    def see(self, frame: Frame, track_id: int, crop_bgr: np.ndarray) -> Face:
        """The live face of this track, created (with its thumbnail) the first time the track is seen."""
        key = (frame.stream_id, track_id)
        face = self._live.get(key)
        if face is None:
            face = self._live[key] = Face(
                stream_id=frame.stream_id,
                track_id=track_id,
                ring=self._ring_shape.new_ring(),
                scorer=FaceScorer(frame.stream_id, track_id, self._policy),
                first_seen=frame.t_capture,
                first_t_media=frame.t_media,
                pending_thumbnail=thumbnail_jpeg(crop_bgr),
                turn=next(self._turns),
            )
        return face

    def requeue(self, faces: Iterable[Face]) -> None:
        """Send these faces, in this order, to the back of the encoder's queue, one crop further on (their crops
        were just encoded)."""
        for face in faces:
            face.turn = next(self._turns)
            face.share += 1

    def get(self, stream_id: str, track_id: int) -> Face | None:
        return self._live.get((stream_id, track_id))

    def evict(self, stream_id: str, track_id: int) -> Face | None:
        """Remove a face (its ring and scorer go with it) and mark it gone; None when it was never seen."""
        face = self._live.pop((stream_id, track_id), None)
        if face is not None:
            face.gone = True
            self._gone.append(face.summary())
        return face

    def evict_stream(self, stream_id: str) -> list[Face]:
        return [self.evict(*key) for key in sorted(k for k in self._live if k[0] == stream_id)]  # type: ignore[misc]

    def live(self) -> list[Face]:
        return [self._live[key] for key in sorted(self._live)]

    def summaries(self) -> list[FaceSummary]:
        """Every face seen so far, gone or live, by stream and track."""
        every = self._gone + [face.summary() for face in self._live.values()]
        return sorted(every, key=lambda s: (s.stream_id, s.track_id))

    @property
    def nbytes(self) -> int:
        return sum(face.ring.nbytes for face in self._live.values())
