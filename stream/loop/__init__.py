"""The loop: command inbox, crop encoder, overload policy, rings, one face's state, verdicts, clips, status lines."""
