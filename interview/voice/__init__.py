"""Voice interviews over WebRTC: the door into fastrtc (rtc.py), signaling, each connection's
ear and the spoken pipeline."""
