"""Voice interviews over WebRTC: turn detection, the spoken pipeline and signaling."""
