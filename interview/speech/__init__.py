"""Speech: the engines (pause detection, speech-to-text, text-to-speech) behind Protocols, the
stack that loads them once, and the cache of the sentences they speak."""
