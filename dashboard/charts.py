"""A face's timeline: its window scores over media time (files) or wall time (live), with the threshold drawn."""

from __future__ import annotations

import altair as alt
import pandas as pd


def timeline_chart(scores: pd.DataFrame, media_time: bool, threshold: float, hysteresis: float) -> alt.LayerChart:
    """Window p_fake as a line, the threshold as a dashed red rule and the hysteresis band shaded around it.

    `scores` is `dashboard.data.scores_frame`'s frame; `media_time` puts seconds into the file on x (rows with
    no media time are left out), otherwise the local wall-clock time of capture.
    """
    if media_time:
        data = scores.dropna(subset=["t_media"]).astype({"t_media": "float64"})[["frame_index", "t_media", "p_fake"]]
        x = alt.X("t_media:Q", title="media time (s)", scale=alt.Scale(zero=False))
        x_tooltip = alt.Tooltip("t_media:Q", title="media time (s)", format=".2f")
    else:
        data = scores[["frame_index", "wall", "p_fake"]]
        x = alt.X("wall:T", title="wall time", axis=alt.Axis(format="%H:%M:%S"))
        x_tooltip = alt.Tooltip("wall:T", title="wall time", format="%H:%M:%S")
    y = alt.Y("p_fake:Q", title="p(fake)", scale=alt.Scale(domain=[0.0, 1.0]))
    line = (
        alt.Chart(data)
        .mark_line(point=alt.OverlayMarkDef(size=12), strokeWidth=1.5)
        .encode(
            x=x,
            y=y,
            tooltip=[x_tooltip, alt.Tooltip("frame_index:Q", title="frame"), alt.Tooltip("p_fake:Q", format=".3f")],
        )
    )
    low, high = max(0.0, threshold - hysteresis), min(1.0, threshold + hysteresis)
    marks = pd.DataFrame({"threshold": [threshold], "low": [low], "high": [high]})
    band = alt.Chart(marks).mark_rect(opacity=0.12, color="gray").encode(y="low:Q", y2="high:Q")
    rule = (
        alt.Chart(marks)
        .mark_rule(color="red", strokeDash=[5, 4], strokeWidth=1.5)
        .encode(y="threshold:Q", tooltip=[alt.Tooltip("threshold:Q", format=".2f")])
    )
    axis = "media time" if media_time else "wall time"
    description = f"window p(fake) over {axis}; threshold {threshold:.2f}, hysteresis band {low:.2f}-{high:.2f}"
    return alt.layer(band, line, rule).properties(height=150, description=description)
