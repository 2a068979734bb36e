"""One stream's path after ingest: faces -> worker -> each track's judge -> alert events, published.

The pipeline executes; it decides nothing about verdicts or alerts. Each track's `TrackJudge` (the same one
calibration's replay runs) says what the verdict is and which event to publish; a shadow model's track has a
judge of its own that never alerts."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .alerts import AlertPublisher
from .contracts import FaceCrop, Frame, ModelTag, Score
from .evidence import EvidenceSettings, TrackEvidence, frame_jpeg, jpeg
from .faces.pipeline import FaceCropper, FaceSettings
from .faces.quality import QualitySettings
from .logs import get
from .scoring import ALERTING, AUTHENTIC, INSUFFICIENT, Judgement, TrackJudge, VerdictPolicy, WindowPolicy, most_severe
from .scoring.drift import DriftTracker
from .worker import InferencePool

log = get(__name__)


@dataclass
class TrackState:
    judge: TrackJudge
    evidence: TrackEvidence | None = None
    shadow: TrackJudge | None = None  # the shadow model's judge of the same track: verdicts, never alerts

    def shadow_summary(self, model: ModelTag) -> dict | None:
        """What events and the state say about the shadow on this track."""
        if self.shadow is None:
            return None
        verdict = self.shadow.verdict
        return {"model": model.name, "model_id": model.model_id, "statistic": self.shadow.statistic,
                "verdict": verdict, "agrees": (verdict in ALERTING) == (self.judge.verdict in ALERTING)}


class StreamPipeline:
    """Frames of one stream in; alert events and stream state out. Lives on the event loop; face detection runs
    on the stream's own thread."""

    def __init__(self, stream_id: str, cropper: FaceCropper, pool: InferencePool, publisher: AlertPublisher,
                 window: WindowPolicy, policy: VerdictPolicy, model: ModelTag, instance: str,
                 update_interval_s: float, metrics, on_state: Callable[[dict, bool], None] | None = None,
                 evidence: EvidenceSettings | None = None, record: bool = False, drift: DriftTracker | None = None,
                 shadow=None):
        """`shadow`: a second loaded model (pool and tag) that scores every crop too and never alerts."""
        self.stream_id, self.cropper, self.pool, self.publisher = stream_id, cropper, pool, publisher
        self.window, self.policy, self.model, self.instance = window, policy, model, instance
        self.update_interval_s, self.metrics = update_interval_s, metrics
        self.evidence = evidence or EvidenceSettings(enabled=False)
        self.record, self.drift = record, drift  # score records for calibration; the authentic-score drift watch
        self.shadow = shadow
        self.session = int(time.time())  # track ids restart with a pipeline: records tell the runs apart
        self._publishing = asyncio.Lock()  # one alert's events leave in the order they were made
        # The stream-state hash: the owner merges in the source's fields (state, fps) and writes it.
        self.on_state = on_state or (lambda state, force: publisher.set_stream_state(stream_id, state))
        # One thread per stream, always the same one: mediapipe's detector must not hop between threads.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"faces-{stream_id}")
        self.tracks: dict[int, TrackState] = {}
        self.frames_in = 0
        self.crops_scored = 0
        self.last_frame_at: float | None = None
        self._busy = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._pending: set[asyncio.Task] = set()
        self._last_state_push = 0.0

    @property
    def verdict(self) -> str:
        return most_severe([t.judge.verdict for t in self.tracks.values()])

    def reconfigure(self, window: WindowPolicy, policy: VerdictPolicy, update_interval_s: float) -> None:
        """New thresholds and windows (a reload): they apply to the next evaluation of every track, open
        alerts stay open, and the events carry the new values."""
        self.window, self.policy, self.update_interval_s = window, policy, update_interval_s
        for track in self.tracks.values():
            track.judge.reconfigure(window, policy, update_interval_s)
            if track.shadow is not None:
                track.shadow.reconfigure(window, policy, update_interval_s)

    def reconfigure_outputs(self, evidence: EvidenceSettings, record: bool, drift: DriftTracker | None) -> None:
        """What the pipeline writes besides alerts (a reload): evidence for the tracks that start from now on, score
        records, the drift watch."""
        self.evidence, self.record, self.drift = evidence, record, drift

    async def update_faces(self, settings: FaceSettings, quality: QualitySettings) -> None:
        """New face or quality settings (a reload): a new cropper on the stream's own thread, keeping the tracker
        (and so every track id)."""
        def swap():
            old = self.cropper
            self.cropper = FaceCropper(settings, template=old.template, tracker=old.tracker, quality=quality,
                                       shadow_template=old.shadow_template)
            old.close()

        await asyncio.get_running_loop().run_in_executor(self.executor, swap)

    async def handle(self, frame: Frame) -> None:
        """Faces of one frame go to the worker; a frame that arrives while the previous is still being cropped
        is skipped (the newest wins), so face detection never makes a stream fall behind."""
        if self._closed:
            return
        self.frames_in += 1
        self.last_frame_at = frame.captured_at
        if self._busy:
            self.metrics.frames_skipped.labels(self.stream_id).inc()
            return
        self._busy = True
        self._idle.clear()
        try:
            loop = asyncio.get_running_loop()
            ended, result, encoded_crops = await loop.run_in_executor(self.executor, self._crop, frame)
        finally:
            self._busy = False
            self._idle.set()
        for track_id in ended:
            await self._end_track(track_id, "track_ended")
        for track_id, reason in result.skipped_tracks:  # a face the monitor cannot judge: it abstains
            track = self._track(track_id)
            if track.shadow is not None:
                track.shadow.dropped(frame.captured_at, reason)
            await self._act(track, track.judge.abstain(frame.captured_at, reason, time.time()))
        for crop, encoded in zip(result.crops, encoded_crops):
            self._track(crop.track_id)
            task = asyncio.create_task(self._scored(crop, encoded, frame.image, self.pool.submit(crop)))
            self._pending.add(task)
            task.add_done_callback(self._scoring_done)
            if self.shadow is not None:  # aligned for the shadow's template when it differs
                shadow_crop = crop if crop.shadow_crop is None else dataclasses.replace(
                    crop, crop=crop.shadow_crop, shadow_crop=None)
                task = asyncio.create_task(self._shadow_scored(shadow_crop, self.shadow.pool.submit(shadow_crop)))
                self._pending.add(task)
                task.add_done_callback(self._scoring_done)
        self._push_state()  # rate-limited: at most once a second

    def _scoring_done(self, task: asyncio.Task) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:  # a bug: said once per crop, loudly
            log.error("handling a score failed", stream_id=self.stream_id, exc_info=task.exception())

    def _crop(self, frame: Frame):
        """On the stream's thread: detect, align, and (for the evidence) encode each crop as JPEG."""
        ended = self.cropper.tracker.expire(frame.captured_at)
        result = self.cropper.process(frame)
        quality = self.evidence.jpeg_quality
        encoded = [jpeg(c.crop, quality) if self.evidence.enabled else b"" for c in result.crops]
        return ended, result, encoded

    def _track(self, track_id: int) -> TrackState:
        if track_id not in self.tracks:
            self.tracks[track_id] = TrackState(
                TrackJudge(self.stream_id, track_id, self.window, self.policy, self.model, self.instance,
                           self.update_interval_s),
                TrackEvidence(self.evidence, self.window.seconds, self.window.max_crops)
                if self.evidence.enabled else None,
                shadow=TrackJudge(self.stream_id, track_id, self.window, self.policy, self.shadow.tag, self.instance,
                                  alerts=False) if self.shadow is not None else None)
        return self.tracks[track_id]

    async def _scored(self, crop: FaceCrop, encoded: bytes, image, future: asyncio.Future) -> None:
        try:
            score: Score = await future
        except Exception as e:  # a failed batch: nothing to add to the window
            log.warning("scoring failed", stream_id=self.stream_id, error=str(e))
            return
        if score.ok:
            self.crops_scored += 1
        track = self.tracks.get(score.track_id)
        if track is None:
            return  # the track ended meanwhile
        if not score.ok:
            track.judge.dropped(score.frame_time, score.dropped)
            return
        if track.evidence is not None:
            track.evidence.add(crop, score.p_fake, encoded, image)
        now = time.time()
        await self._act(track, track.judge.score(score.frame_time, score.p_fake, now))
        if self.record:
            self._record(crop, score, now, self.model.name)
        if self.drift is not None and track.judge.verdict == AUTHENTIC:
            await self._watch_drift(score.p_fake, score.frame_time, now)

    async def _shadow_scored(self, crop: FaceCrop, future: asyncio.Future) -> None:
        """The shadow's score: its own window and verdict on the track, published in the state and on the
        track's next events, never as an alert of its own."""
        try:
            score: Score = await future
        except Exception as e:
            log.warning("shadow scoring failed", stream_id=self.stream_id, error=str(e))
            return
        track = self.tracks.get(score.track_id)
        if track is None or track.shadow is None:
            return
        if not score.ok:
            track.shadow.dropped(score.frame_time, score.dropped)
            return
        now = time.time()
        track.shadow.score(score.frame_time, score.p_fake, now)  # never an event: it has no lifecycle
        if self.record:
            self._record(crop, score, now, self.shadow.tag.name)
        self._push_state()

    def _record(self, crop: FaceCrop, score: Score, now: float, model: str) -> None:
        self.publisher.record_score({
            "stream_id": self.stream_id, "session": self.session, "track_id": score.track_id,
            "frame_time": score.frame_time, "evaluated_at": now, "p_fake": score.p_fake, "model": model,
            "model_id": score.model_id, **{f"q_{k}": v for k, v in crop.quality().items()}})

    async def _watch_drift(self, p_fake: float, frame_time: float, now: float) -> None:
        drift = self.drift
        drift.add(p_fake, frame_time)
        if now - drift.last_check < drift.settings.check_every_s:
            return
        event = drift.check(now)
        for hour in drift.dirty:
            self.publisher.save_drift(self.stream_id, hour, drift.hours.get(hour, []))
        drift.dirty.clear()
        shift = drift.shift(now)
        if shift is not None:
            self.metrics.score_drift.labels(self.stream_id).set(shift)
        if event is not None:
            log.warning("score drift", stream_id=self.stream_id, baseline=event["baseline"], median=event["median"],
                        crops=event["crops"])
            await self.publisher.publish(event)

    async def _act(self, track: TrackState, judgement: Judgement) -> None:
        """Do what the judge decided: publish its event, if any, and refresh the stream state."""
        if judgement.event is not None:
            await self._publish(judgement.event, track)
        self._push_state()

    async def _publish(self, event, track: TrackState) -> None:
        if self.shadow is not None:
            event.shadow = track.shadow_summary(self.shadow.tag)
        async with self._publishing:
            if track.evidence is not None:  # the evidence first: a subscriber that sees the event finds it
                await self._publish_evidence(event, track.evidence)
            await self.publisher.publish(event)
        data = event.to_dict()
        last_frame = data["times"].get("last_frame")
        if last_frame is not None:
            self.metrics.frame_to_alert.observe(max(0.0, time.time() - last_frame))
        log.info("alert", stream_id=self.stream_id, alert_id=event.alert_id, type=event.type, seq=event.seq,
                 event_id=event.event_id, verdict=event.verdict, track_id=event.track_id)

    async def _publish_evidence(self, event, evidence: TrackEvidence) -> None:
        frame = b""
        if (latest := evidence.latest()) is not None:  # encoded off the loop
            frame = await asyncio.get_running_loop().run_in_executor(
                None, frame_jpeg, *latest, self.evidence.frame_width, self.evidence.jpeg_quality)
        record, index = evidence.record(event.to_dict(), self.publisher.evidence_key(event.alert_id),
                                        self.model.sha256, frame)
        event.evidence.update(index)
        await self.publisher.publish(record)

    async def _end_track(self, track_id: int, reason: str) -> None:
        track = self.tracks.pop(track_id, None)
        if track is None:
            return
        event = track.judge.end(reason, time.time())
        if event is not None:
            await self._publish(event, track)
        self._push_state(force=True)

    async def close(self, reason: str) -> None:
        """The stream (or a publisher's session) ended, was removed, or the daemon stops: close every open
        alert. Faces seen after this start new tracks."""
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        for track_id in list(self.tracks):
            await self._end_track(track_id, reason)
        if not self._closed:  # on the cropper's own thread: it is the tracker's only user
            await asyncio.get_running_loop().run_in_executor(self.executor, self.cropper.tracker.forget)
        self._push_state(force=True)

    def stop_taking_frames(self) -> None:
        self._closed = True

    async def shutdown(self, reason: str) -> None:
        """Stop taking frames, close open alerts, and release the face detector once it is idle (closing a
        mediapipe detector while another thread runs it would block)."""
        self._closed = True
        await self.close(reason)
        await self._idle.wait()
        await asyncio.get_running_loop().run_in_executor(self.executor, self.cropper.close)
        self.executor.shutdown(wait=False)

    def status(self) -> dict:
        return {
            "verdict": self.verdict, "frames_in": self.frames_in, "crops_scored": self.crops_scored,
            "tracks": {str(t): {"verdict": s.judge.verdict, "statistic": s.judge.statistic,
                                "alert_id": s.judge.alert_id, "abstain_reason": s.judge.abstain_reason,
                                **({"shadow": s.shadow_summary(self.shadow.tag)} if self.shadow else {})}
                       for t, s in self.tracks.items()},
            "model": self.model.name, "shadow": self.shadow.tag.name if self.shadow else None,
            **(self.shadow_state() if self.shadow else {}),
            "abstain_reason": self.abstain_reason,
            "last_frame_at": self.last_frame_at,
        }

    @property
    def abstain_reason(self) -> str | None:
        """When the stream's verdict is insufficient_evidence: the commonest reason among its tracks."""
        if self.verdict != INSUFFICIENT:
            return None
        reasons = [t.judge.abstain_reason for t in self.tracks.values() if t.judge.abstain_reason]
        return max(set(reasons), key=reasons.count) if reasons else None

    def state(self) -> dict:
        """This pipeline's fields of the stream-state hash."""
        statistics = [t.judge.statistic for t in self.tracks.values() if t.judge.statistic is not None]
        state = {"verdict": self.verdict, "score": max(statistics) if statistics else None,
                 "tracks": len(self.tracks), "frames_in": self.frames_in, "crops_scored": self.crops_scored,
                 "last_frame_at": self.last_frame_at, "instance": self.instance, "abstain_reason": self.abstain_reason,
                 "track_scores": {str(t): s.judge.statistic for t, s in self.tracks.items()
                                  if s.judge.statistic is not None},
                 "model": self.model.name, "model_id": self.model.model_id}
        if self.shadow is not None:
            state.update(self.shadow_state())
        return state

    def shadow_state(self) -> dict:
        """The shadow's stream-level view: its most severe track verdict, its highest statistic, and whether it
        agrees with the model's (both alerting or both not)."""
        shadows = [t.shadow for t in self.tracks.values() if t.shadow is not None]
        verdict = most_severe([s.verdict for s in shadows])
        statistics = [s.statistic for s in shadows if s.statistic is not None]
        return {"shadow_model": self.shadow.tag.name, "shadow_model_id": self.shadow.tag.model_id,
                "shadow_verdict": verdict, "shadow_score": max(statistics) if statistics else None,
                "shadow_agrees": (verdict in ALERTING) == (self.verdict in ALERTING)}

    def _push_state(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_state_push < 1.0:
            return
        self._last_state_push = now
        self.on_state({**self.state(), "updated_at": now}, force)
