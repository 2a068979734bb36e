"""A light face tracker: each face keeps a stable track id across frames (IoU, then centre distance)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def iou(a: tuple, b: tuple) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    track_id: int
    box: tuple
    last_seen: float
    first_seen: float = field(default=0.0)


class FaceTracker:
    """Greedy matching, best pairs first: IoU >= `min_iou`, or centres closer than `max_centre_shift` box
    sizes plus `max_speed` box sizes per second since the track was last seen (so that sparse sampling, a
    frame every 2 s, does not split one moving face into many tracks). Tracks unseen for `max_absence_s` end
    (and are reported by `expire`)."""

    def __init__(self, max_absence_s: float = 2.0, min_iou: float = 0.2, max_centre_shift: float = 0.6,
                 max_speed: float = 2.0):
        self.max_absence_s, self.min_iou, self.max_centre_shift = max_absence_s, min_iou, max_centre_shift
        self.max_speed = max_speed
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def update(self, boxes: list[tuple], now: float) -> list[int]:
        """Track ids for `boxes` (x, y, w, h) seen at `now`, in the same order."""
        self.expire(now)
        candidates = []
        for i, box in enumerate(boxes):
            for track in self.tracks.values():
                overlap = iou(box, track.box)
                shift = _centre_distance(box, track.box) / max(1.0, np.sqrt(track.box[2] * track.box[3]))
                reach = self.max_centre_shift + self.max_speed * max(0.0, now - track.last_seen)
                if overlap >= self.min_iou or shift <= reach:
                    candidates.append((overlap - shift, i, track.track_id))
        assigned: dict[int, int] = {}
        used: set[int] = set()
        for _, i, track_id in sorted(candidates, reverse=True):
            if i not in assigned and track_id not in used:
                assigned[i] = track_id
                used.add(track_id)
        ids = []
        for i, box in enumerate(boxes):
            if i not in assigned:
                assigned[i] = self._next_id
                self.tracks[self._next_id] = Track(self._next_id, box, now, now)
                self._next_id += 1
            track = self.tracks[assigned[i]]
            track.box, track.last_seen = box, now
            ids.append(track.track_id)
        return ids

    def forget(self) -> None:
        """Every face is new from now on (a publisher's session ended); ids are never reused."""
        self.tracks.clear()

    def expire(self, now: float) -> list[int]:
        """End tracks not seen for `max_absence_s`; returns their ids."""
        ended = [t for t, track in self.tracks.items() if now - track.last_seen > self.max_absence_s]
        for track_id in ended:
            del self.tracks[track_id]
        return ended


def _centre_distance(a: tuple, b: tuple) -> float:
    return float(np.hypot(a[0] + a[2] / 2 - b[0] - b[2] / 2, a[1] + a[3] / 2 - b[1] - b[3] / 2))
