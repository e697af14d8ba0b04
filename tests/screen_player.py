"""A bare Tk window at the screen's top-left corner that plays a video in a loop: the "video call" a screen
capture test looks at. Run under an X display: `DISPLAY=:N python tests/screen_player.py VIDEO`."""

from __future__ import annotations

import sys
import tkinter

import av
import cv2


def frames_ppm(path: str) -> list[bytes]:
    with av.open(path) as container:
        images = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    return [b"P6 %d %d 255\n" % (i.shape[1], i.shape[0]) + cv2.cvtColor(i, cv2.COLOR_BGR2RGB).tobytes() for i in images]


def main(path: str) -> None:
    frames = frames_ppm(path)
    root = tkinter.Tk()
    root.overrideredirect(True)  # no decorations, so the picture starts exactly at (0, 0)
    root.geometry("+0+0")
    label = tkinter.Label(root, borderwidth=0, highlightthickness=0)
    label.pack()
    state = {"index": 0, "image": None}

    def show() -> None:
        state["image"] = tkinter.PhotoImage(data=frames[state["index"] % len(frames)], format="PPM")
        label.configure(image=state["image"])
        state["index"] += 1
        root.after(33, show)

    show()
    print("PLAYING", flush=True)
    root.mainloop()


if __name__ == "__main__":
    main(sys.argv[1])
