"""Speech engines: pause detection (VAD), speech-to-text and text-to-speech."""
